import { randomUUID } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderStatus } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { type Mesh, type Name, startMesh } from "@meshwork/e2e";
import { checkConsistency } from "@meshwork/orders";
import type { ManagedProcess } from "@meshwork/testing";
import postgres from "postgres";
import { cleanups, startPrivateInfra } from "./infra.js";
import { eventViolations, type Observed } from "./invariants.js";
import { describeFault, type Fault, KILLABLE, type Killable, planFaults } from "./plan.js";
import { createRng } from "./rng.js";
import { createSession } from "./session.js";
import { createWatchdog, DeadlineError, StallError, withDeadline } from "./watchdog.js";

/** What one client is doing, for the stall dump. */
interface ClientState {
  id: number;
  key?: string | undefined;
  attempt: number;
  lastError?: string | undefined;
  awaiting: string;
  since: number;
}

/** The driver process's live handles by kind (timers, sockets, ...), for the stall dump. */
const countResources = () => {
  const counts: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
};

/** Violations that may still resolve on their own: the run waits for them until quiescence ends. */
const UNSETTLED =
  / is still |never notified|check failed|payments says voided, but the provider's ledger says authorized/;

export interface ChaosOptions {
  seed: number;
  orders: number;
  clients: number;
  faults: number;
  replicas: Partial<Record<Killable, number>>;
  ackWaitMs: number;
  /** The fault kinds to draw from (default all). */
  kinds?: readonly Fault["kind"][];
  /** How long the mesh may take to settle after the load. */
  quiescenceMs: number;
  /** The run fails with a dump of every client when no order is acknowledged for this long. */
  watchdogMs: number;
  /** Each placeOrder attempt's deadline (sent as the call's timeout). */
  callTimeoutMs: number;
  /**
   * How long past its deadline an attempt may stay unsettled before the client gives up on it
   * (the transport should have rejected it at the deadline: each such attempt is a violation).
   */
  callGraceMs: number;
  /** A fault step (a kill and restart, a Postgres restart, ...) that takes longer fails the run. */
  faultTimeoutMs: number;
  /** The share of faults after the first round that restart Postgres (else the seeded draw). */
  postgresShare?: number;
  /** The users service's access token lifetime (its default, 1 h, when absent). */
  tokenTtlS?: number;
  say: (line: string) => void;
  /** Runs after the check with the mesh still up (the test plants a violation here). */
  afterCheck?: (ctx: { mesh: Mesh; check: () => Promise<string[]> }) => Promise<void>;
}

export interface ChaosReport {
  seed: number;
  orders: {
    planned: number;
    acknowledged: number;
    confirmed: number;
    cancelled: number;
    failedCalls: number;
    /** Logins of the clients and the admin (a token is renewed at half its lifetime). */
    logins: number;
    /** The commonest failures the clients saw, with counts. */
    errors: Array<[string, number]>;
  };
  faults: Array<{ atOrder: number; what: string; tookMs: number; error?: string }>;
  violations: string[];
  seconds: { setup: number; load: number; quiescence: number; total: number };
}

export const DEFAULTS: Omit<ChaosOptions, "seed" | "say"> = {
  orders: 40,
  clients: 4,
  faults: 6,
  replicas: { orders: 2, payments: 2, notifications: 2 },
  ackWaitMs: 2_000,
  quiescenceMs: 120_000,
  watchdogMs: 60_000,
  callTimeoutMs: 10_000,
  callGraceMs: 5_000,
  // A restart waits up to 2 x 120 s for a service's "listening" and "announced" lines.
  faultTimeoutMs: 300_000,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Calls a fault switch until a payments instance answers, 30 s at most: while both instances are
 * killed or not yet SERVING again the gateway has no endpoint for them (seed 20261207 of 2000
 * orders: "no endpoint for cluster payments" at order 1026 left a payment fault unapplied).
 */
async function whenReachable(call: () => Promise<unknown>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await call();
      return;
    } catch (err) {
      if (!(err instanceof ConnectError) || err.code !== Code.Unavailable || Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}
const statusOf = (s: OrderStatus) =>
  s === OrderStatus.CONFIRMED ? "confirmed" : s === OrderStatus.CANCELLED ? "cancelled" : "open";

/**
 * One chaos run: private NATS and Postgres, the whole mesh as processes (with replicas), N orders
 * from several clients through the gateway while the seeded plan kills and restarts processes,
 * restarts NATS and Postgres, pauses a consumer past its ack wait and switches payment faults on;
 * then it waits for quiescence and checks the invariants. Everything started dies in `finally`.
 */
export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const began = Date.now();
  const rng = createRng(o.seed);
  const plan = planFaults(rng, {
    orders: o.orders,
    faults: o.faults,
    replicas: o.replicas,
    ackWaitMs: o.ackWaitMs,
    ...(o.kinds ? { kinds: o.kinds } : {}),
    ...(o.postgresShare !== undefined ? { postgresShare: o.postgresShare } : {}),
  });
  const infra = await startPrivateInfra();
  const previousPg = process.env.MESHWORK_TEST_PG_URL;
  process.env.MESHWORK_TEST_PG_URL = infra.postgresUrl;
  let mesh: Mesh | undefined;
  const slots = {} as Record<Killable, ManagedProcess[]>;
  const urlsOf = {} as Record<Killable, string[]>;
  const cleanup = async () => {
    if (previousPg === undefined) delete process.env.MESHWORK_TEST_PG_URL;
    else process.env.MESHWORK_TEST_PG_URL = previousPg;
    for (const { proc } of mesh?.instances ?? [])
      if (proc.child.exitCode === null) proc.child.kill("SIGCONT");
    // No graceful teardown needed: the servers and every database go with the private infra.
    for (const { proc } of mesh?.instances ?? [])
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    await mesh?.stop().catch(() => {});
    await infra.remove();
  };
  cleanups.add(cleanup);
  try {
    const { freePort } = await import("@meshwork/testing");
    mesh = await startMesh(
      // users on a fixed port: the gateway's JWKS URL must survive a restart of users.
      {
        users: {
          PORT: String(await freePort()),
          ...(o.tokenTtlS !== undefined ? { USERS_TOKEN_TTL_S: String(o.tokenTtlS) } : {}),
        },
      },
      {
        natsUrl: infra.natsUrl,
        common: { CONSUMER_ACK_WAIT_MS: String(o.ackWaitMs), DB_CONNECT_TIMEOUT_S: "5" },
        gateway: { AUTH_RATE_LIMITS: "off" },
      },
    );
    const m = mesh;
    for (const s of KILLABLE) {
      slots[s] = [m.procs[s]];
      urlsOf[s] = [m.urls[s]];
      for (let i = 1; i < (o.replicas[s] ?? 1); i++) {
        const { proc, url } = await m.spawn(s);
        slots[s].push(proc);
        urlsOf[s].push(url);
      }
    }
    const admin = await m.admin();
    const products: string[] = [];
    for (let i = 0; i < 6; i++) {
      const { product } = await m.clients.inventory.createProduct(
        {
          sku: `CHAOS-${o.seed}-${i}-${randomUUID().slice(0, 4)}`,
          name: `chaos ${i}`,
          price: { amountMinor: BigInt(rng.int(100, 5_000)), currency: "EUR" },
          initialStock: BigInt(rng.int(Math.ceil(o.orders / 8), Math.ceil(o.orders / 2))),
        },
        admin.auth,
      );
      products.push(product?.id ?? "");
    }
    let logins = 0;
    const counted = async <T>(login: Promise<T>) => {
      const s = await login;
      logins++;
      return s;
    };
    const users = Array.from({ length: o.clients }, (_, i) => {
      const email = `chaos-${i}-${randomUUID().slice(0, 6)}@example.com`;
      return createSession(() => counted(m.login(email)), o.tokenTtlS);
    });
    await Promise.all(users.map((u) => u.renew()));
    const adminSession = createSession(() => counted(m.admin()), o.tokenTtlS);
    await adminSession.renew();
    const orders = Array.from({ length: o.orders }, (_, i) => ({
      user: i % o.clients,
      key: `chaos-${o.seed}-${i}-${randomUUID()}`,
      // Distinct products: the same product twice is refused (INVALID_ARGUMENT).
      items: [...new Set(Array.from({ length: rng.int(1, 2) }, () => rng.pick(products)))].map(
        (productId) => ({
          productId,
          quantity: BigInt(rng.int(1, 3)),
        }),
      ),
    }));
    const setupDone = Date.now();
    o.say(
      `seed ${o.seed}: mesh up in ${((setupDone - began) / 1000).toFixed(1)} s; ${plan.length} faults planned`,
    );

    const acknowledged = new Map<string, string>();
    const keysSent = new Map<string, number>();
    let started = 0;
    let failedCalls = 0;
    const errorKinds = new Map<string, number>();
    const hung: string[] = [];
    let stopping = false;
    let next = 0;
    const watchdog = createWatchdog({
      stallMs: o.watchdogMs,
      what: `seed ${o.seed}`,
      dump: () => dumpState(),
    });
    const states: ClientState[] = [];
    const client = async (id: number) => {
      const state: ClientState = { id, attempt: 0, awaiting: "its first order", since: Date.now() };
      states.push(state);
      const set = (awaiting: string) => {
        state.awaiting = awaiting;
        state.since = Date.now();
      };
      for (;;) {
        const job = orders[next++];
        if (!job || stopping) return set("nothing (done)");
        started++;
        const user = users[job.user];
        if (!user) return set("nothing (no user)");
        keysSent.set(user.id, (keysSent.get(user.id) ?? 0) + 1);
        const deadline = Date.now() + 90_000;
        state.key = job.key;
        state.attempt = 0;
        state.lastError = undefined;
        for (;;) {
          state.attempt++;
          set(`placeOrder attempt ${state.attempt}`);
          try {
            const res = await withDeadline(
              `placeOrder ${job.key} attempt ${state.attempt}`,
              o.callTimeoutMs + o.callGraceMs,
              async (signal) =>
                m.clients.orders.placeOrder(
                  { idempotencyKey: job.key, items: job.items },
                  { ...(await user.auth()), timeoutMs: o.callTimeoutMs, signal },
                ),
            );
            acknowledged.set(job.key, res.order?.id ?? "");
            watchdog.progress();
            break;
          } catch (err) {
            failedCalls++;
            if (err instanceof DeadlineError) {
              const at = hung.length === 0 ? ` (first at ${new Date().toISOString()})` : "";
              hung.push(
                `${err.message}: the transport did not settle it at its ${o.callTimeoutMs} ms deadline${at}`,
              );
              // The state while it is still live: what the gateway and every service looked like.
              if (hung.length === 1) void dumpState().then((d) => o.say(`first unsettled call:\n${d}`));
            }
            const e = ConnectError.from(err);
            const what =
              err instanceof DeadlineError
                ? "HUNG: not settled by the transport"
                : `${Code[e.code]}: ${e.rawMessage.slice(0, 120)}`;
            state.lastError = what;
            errorKinds.set(what, (errorKinds.get(what) ?? 0) + 1);
            // A refusal of the request itself is not a fault to wait out.
            if (e.code === Code.InvalidArgument || e.code === Code.PermissionDenied) break;
            // An expired token is the client's to renew (as any client of the mesh must).
            if (e.code === Code.Unauthenticated && /expired/.test(e.rawMessage)) {
              set("a login (token expired)");
              await user.renew().catch(() => {});
            }
            if (Date.now() > deadline || stopping) break;
            set("the 250 ms retry pause");
            await sleep(250);
          }
        }
      }
    };
    const faults: ChaosReport["faults"] = [];
    let driverState = "waiting for the first fault's order count";
    let driverSince = Date.now();
    const setDriver = (what: string) => {
      driverState = what;
      driverSince = Date.now();
    };
    const runFault = async (f: Fault) => {
      switch (f.kind) {
        case "kill": {
          const list = slots[f.service];
          const victim = list[f.instance];
          setDriver(`kill -9 ${f.service}#${f.instance}`);
          await victim?.stop("SIGKILL");
          setDriver(`${f.service}#${f.instance} down for ${f.downMs} ms`);
          await sleep(f.downMs);
          setDriver(`restarting ${f.service}#${f.instance} (until it announces itself)`);
          if (f.instance === 0) {
            list[0] = await m.start(f.service as Name);
            urlsOf[f.service][0] = m.urls[f.service];
          } else {
            const { proc, url } = await m.spawn(f.service as Name);
            list[f.instance] = proc;
            urlsOf[f.service][f.instance] = url;
          }
          return;
        }
        case "restart-nats":
          setDriver("restarting NATS");
          return infra.restartNats(f.downMs);
        case "restart-postgres":
          setDriver("restarting Postgres");
          return infra.restartPostgres(f.downMs);
        case "pause-consumer": {
          const p = slots.notifications[f.instance];
          const pid = p?.child.pid;
          if (!pid || p.child.exitCode !== null) return;
          setDriver(`notifications#${f.instance} SIGSTOPped`);
          process.kill(pid, "SIGSTOP");
          try {
            await sleep(f.pauseMs);
          } finally {
            process.kill(pid, "SIGCONT");
          }
          return;
        }
        case "payment-faults": {
          const faults = {
            failureRate: f.failureRate,
            addedLatencyMs: f.latencyMs,
            hardDown: false,
            declineAboveMinor: 0n,
          };
          setDriver("switching payment faults on");
          await whenReachable(async () =>
            m.clients.payments.setFaults({ faults }, { ...(await adminSession.auth()), timeoutMs: 5_000 }),
          );
          try {
            setDriver("payment faults on");
            await sleep(f.forMs);
          } finally {
            setDriver("switching payment faults off");
            const off = { ...faults, failureRate: 0, addedLatencyMs: 0 };
            await whenReachable(async () =>
              m.clients.payments.setFaults(
                { faults: off },
                { ...(await adminSession.auth()), timeoutMs: 5_000 },
              ),
            );
          }
        }
      }
    };
    const dumpState = async (): Promise<string> => {
      const now = Date.now();
      const out = [
        `driver: ${driverState} for ${now - driverSince} ms; ${started} orders started, ${acknowledged.size} acknowledged, ${hung.length} calls left unsettled by the transport`,
        `driver process: ${JSON.stringify(countResources())}`,
        "clients:",
        ...states.map(
          (c) =>
            `  #${c.id}: ${c.key ?? "-"} attempt ${c.attempt}, awaiting ${c.awaiting} for ${now - c.since} ms; last error: ${c.lastError ?? "none"}`,
        ),
        "services (the gateway's view; each instance's /healthz; its last lines):",
      ];
      for (const s of KILLABLE) {
        const eps = m.endpoints(s).map((e) => `${e.url} ${e.health}`);
        out.push(`  ${s}: gateway sees ${eps.join(", ") || "none"}`);
        await Promise.all(
          slots[s].map(async (p, i) => {
            const url = urlsOf[s][i];
            const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(2_000) })
              .then(async (r) => `${r.status} ${await r.text()}`)
              .catch((err: unknown) => `no answer (${err instanceof Error ? err.message : String(err)})`);
            const exit = p.child.exitCode ?? p.child.signalCode;
            out.push(
              `  ${s}#${i} pid ${p.child.pid} ${url} ${exit === null ? "running" : `exited ${exit}`}: /healthz ${health}`,
            );
            for (const l of p.lines.slice(-4)) out.push(`      ${l.slice(0, 300)}`);
          }),
        );
      }
      return out.join("\n");
    };
    const driver = async () => {
      for (const p of plan) {
        while (started < p.atOrder) {
          if (stopping) return;
          await sleep(20);
        }
        const t = Date.now();
        const what = describeFault(p.fault);
        o.say(
          `  at order ${p.atOrder} (${acknowledged.size} acknowledged, +${((t - setupDone) / 1000).toFixed(0)} s): ${what}`,
        );
        try {
          await withDeadline(`fault at order ${p.atOrder} (${what})`, o.faultTimeoutMs, () =>
            runFault(p.fault),
          );
          faults.push({ atOrder: p.atOrder, what, tookMs: Date.now() - t });
        } catch (err) {
          // A fault step that never finishes is a hang of its own: fail the run, loudly.
          if (err instanceof DeadlineError)
            throw new StallError(`${err.message} while ${driverState}\n${await dumpState()}`);
          faults.push({ atOrder: p.atOrder, what, tookMs: Date.now() - t, error: String(err) });
        }
        setDriver("waiting for the next fault's order count");
      }
      setDriver("done");
    };
    try {
      await Promise.race([
        Promise.all([
          driver(),
          // Once every order is answered the driver may still be working through its plan (it
          // lags the clients: each fault takes seconds); each of its steps has its own deadline.
          Promise.all(Array.from({ length: o.clients * 2 }, (_, i) => client(i))).then(() => watchdog.stop()),
        ]),
        watchdog.fired,
      ]);
    } finally {
      stopping = true;
      watchdog.stop();
    }
    const loadDone = Date.now();

    const observe = async (): Promise<Observed> => {
      const all: Observed["orders"][number][] = [];
      let pageToken = "";
      do {
        const page = await m.clients.orders.listOrders(
          { allUsers: true, pageSize: 100, pageToken },
          { ...(await adminSession.auth()), timeoutMs: 10_000 },
        );
        for (const x of page.orders) all.push({ id: x.id, userId: x.userId, status: statusOf(x.status) });
        pageToken = page.nextPageToken;
      } while (pageToken);
      const sql = postgres(m.dbs.notifications.url, { max: 1, connect_timeout: 5, onnotice: () => {} });
      try {
        const rows = await sql<{ userId: string; kind: string; body: string; eventId: string }[]>`
          select user_id as "userId", kind, body, event_id as "eventId" from notifications`;
        return {
          orders: all,
          acknowledged,
          keysSent,
          users: users.map((u) => u.id),
          notifications: [...rows],
        };
      } finally {
        await sql.end();
      }
    };
    // Each check is bounded too: a quiescence wait that hangs is the stall this run looks for.
    // It makes three calls per order, one order at a time: 2000 orders took over 120 s at load 25.
    const checkMs = Math.max(120_000, o.orders * 150);
    const check = () =>
      withDeadline("the invariant check", checkMs, async () => [
        ...(await checkConsistency({
          ...m.clients,
          admin: { ...(await adminSession.auth()), timeoutMs: 15_000 },
        })),
        ...eventViolations(await observe()),
      ]);
    // Quiescence: every saga finished, every outcome notified and every hold a void left at the
    // provider released by payments' sweeper (it retries while the provider fails), or the deadline.
    const settleBy = Date.now() + o.quiescenceMs;
    let violations: string[] = [];
    for (;;) {
      violations = await check().catch((err: unknown) => [`check failed: ${String(err)}`]);
      const unsettled = violations.filter((v) => UNSETTLED.test(v));
      if (unsettled.length === 0 || Date.now() > settleBy) break;
      await sleep(1_000);
    }
    const settled = Date.now();
    // An attempt the transport never settled is a hang even if a retry got through.
    violations.push(...hung.map((h) => `unsettled call: ${h}`));
    // A process that died without being killed is a finding too: say how it ended.
    for (const s of KILLABLE) {
      slots[s].forEach((p, i) => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) {
          const last = p.lines.slice(-6).map((l) => `    ${l.slice(0, 400)}`);
          violations.push(
            `${s}#${i} exited (${p.child.exitCode ?? p.child.signalCode}) without being killed:\n${last.join("\n")}`,
          );
        }
      });
    }
    const final = await withDeadline("the final observation", checkMs, observe);
    await o.afterCheck?.({ mesh: m, check });
    return {
      seed: o.seed,
      orders: {
        planned: o.orders,
        acknowledged: acknowledged.size,
        confirmed: final.orders.filter((x) => x.status === "confirmed").length,
        cancelled: final.orders.filter((x) => x.status === "cancelled").length,
        failedCalls,
        logins,
        errors: [...errorKinds].sort((a, b) => b[1] - a[1]).slice(0, 8),
      },
      faults,
      violations,
      seconds: {
        setup: (setupDone - began) / 1000,
        load: (loadDone - setupDone) / 1000,
        quiescence: (settled - loadDone) / 1000,
        total: (Date.now() - began) / 1000,
      },
    };
  } finally {
    cleanups.delete(cleanup);
    await cleanup();
  }
}

/** The report as text: the seed first, so a failing run can be repeated. */
export function formatReport(r: ChaosReport): string {
  const lines = [
    `chaos report: seed ${r.seed} (repeat with --seed ${r.seed} --orders ${r.orders.planned})`,
    `orders: ${r.orders.planned} planned, ${r.orders.acknowledged} acknowledged, ${r.orders.confirmed} confirmed, ${r.orders.cancelled} cancelled; ${r.orders.failedCalls} failed calls retried; ${r.orders.logins} logins`,
    ...r.orders.errors.map(([what, n]) => `  ${n} x ${what}`),
    `time: setup ${r.seconds.setup.toFixed(1)} s, load ${r.seconds.load.toFixed(1)} s, quiescence ${r.seconds.quiescence.toFixed(1)} s, total ${r.seconds.total.toFixed(1)} s`,
    `faults (${r.faults.length}):`,
    ...r.faults.map(
      (f) => `  at order ${f.atOrder}: ${f.what} (${f.tookMs} ms)${f.error ? ` FAILED: ${f.error}` : ""}`,
    ),
    r.violations.length === 0
      ? "invariants: all hold (sagas terminal, stock conserved, captures match, cancellations clean, events applied exactly once)"
      : `invariants: ${r.violations.length} violation(s)`,
    ...r.violations.map((v) => `  violation: ${v}`),
  ];
  return lines.join("\n");
}
