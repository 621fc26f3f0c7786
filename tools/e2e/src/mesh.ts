import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { cacheBucket } from "@meshwork/cache";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { removeRegistry } from "@meshwork/discovery";
import { connectNats, meshStreams, provision, streamName } from "@meshwork/events";
import { createGateway, type Gateway, loadConfig } from "@meshwork/gateway/embedded";
import { generateIdentityKey } from "@meshwork/runtime";
import type { Logger } from "@meshwork/telemetry";
import {
  createTestDatabase,
  type ManagedProcess,
  startProcess,
  type TestDatabase,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";

// tools/e2e/{src,dist} -> apps/<name>/dist/main.js
const app = (name: string) => fileURLToPath(new URL(`../../../apps/${name}/dist/main.js`, import.meta.url));
const SERVICES = ["users", "inventory", "payments", "orders", "notifications"] as const;
export type Name = (typeof SERVICES)[number];

const exitOf = (p: ManagedProcess) =>
  p.child.exitCode !== null || p.child.signalCode !== null
    ? `exited ${p.child.exitCode ?? p.child.signalCode}`
    : "running";

/**
 * Waits for a starting service's `msg` log line, and fails at once, with the process's last
 * output lines, if it exits first (a timed-out wait names them too, see `startProcess`).
 */
async function startLine(name: string, p: ManagedProcess, msg: string): Promise<Record<string, unknown>> {
  const exited = p.exited.then((code) => {
    const tail = p.lines.slice(-60).join("\n");
    throw new Error(`${name} (pid ${p.child.pid}) exited (${code}) before logging "${msg}":\n${tail}`);
  });
  try {
    return await Promise.race([p.waitForLog((l) => l.msg === msg, 120_000), exited]);
  } finally {
    exited.catch(() => {});
  }
}

/**
 * The whole mesh as real processes on the real Postgres (a database per service) and NATS, each
 * test run in its own events namespace and registry bucket, with the gateway in front (in this
 * process). `start("orders")` starts a service again on the same database. Used by the
 * end-to-end tests and the orders benchmark.
 */
export async function startMesh(
  env: Partial<Record<Name, Record<string, string>>> = {},
  options: {
    common?: Record<string, string>;
    gatewayLogLevel?: string;
    /** More settings for the gateway (it runs in this process), e.g. `OTEL_*`. */
    gateway?: Record<string, string>;
    /** The gateway's logger (to read its lines back); else one at `gatewayLogLevel` on stdout. */
    gatewayLogger?: Logger;
    /** Node flags per service (`--cpu-prof` for a profile). */
    nodeArgs?: Partial<Record<Name, string[]>>;
    /** The NATS server (default `NATS_URL`, else the machine's on 4222). */
    natsUrl?: string;
    /** Rewrites the DATABASE_URL each service gets (the orders bench counts round trips through a relay). */
    databaseUrl?: (url: string) => string;
  } = {},
) {
  const natsUrl = options.natsUrl ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  const namespace = `${uniqueName("t")}.`;
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  {
    // The streams the legacy monolith owns (it is not part of this mesh): inventory, users and
    // orders consume them without declaring them, so their strangler syncs run (and export
    // their consumer metrics) as in a mesh with legacy.
    const nc = await connectNats(natsUrl, "e2e-setup");
    await provision(await jetstreamManager(nc), {
      streams: [meshStreams.legacy(namespace), meshStreams.legacyUsers(namespace)],
    });
    await nc.close();
  }
  const dbs = Object.fromEntries(
    await Promise.all(
      SERVICES.map(async (s) => [s, await createTestDatabase(`mw_${s.slice(0, 4)}`)] as const),
    ),
  ) as Record<Name, TestDatabase>;
  // The first admin comes from the bootstrap secret, given to users as a deployment's Secret would be.
  const bootstrapSecret = randomBytes(32).toString("base64url");
  const procs = {} as Record<Name, ManagedProcess>;
  const urls = {} as Record<Name, string>;
  // As `meshctl up` does: a key per issuer (the gateway and each service), every service trusting all.
  const keys = Object.fromEntries(
    (["gateway", ...SERVICES] as const).map((n) => [n, generateIdentityKey()]),
  ) as Record<Name | "gateway", { privateKey: string; publicKey: string }>;
  const trust = Object.entries(keys)
    .map(([n, k]) => `${n}=${k.publicKey}`)
    .join(",");
  /** Every instance started, replicas and killed ones included (teardown stops those alive). */
  const instances: Array<{ name: Name; proc: ManagedProcess }> = [];
  /** Starts one more instance of `name` on its database and waits until it has announced itself. */
  const spawn = async (name: Name) => {
    const p = startProcess(process.execPath, [...(options.nodeArgs?.[name] ?? []), app(name)], {
      env: {
        PORT: "0",
        DATABASE_URL: options.databaseUrl?.(dbs[name].url) ?? dbs[name].url,
        NATS_URL: natsUrl,
        EVENTS_NAMESPACE: namespace,
        DISCOVERY_BUCKET: bucket,
        DISCOVERY_TTL_MS: "2000",
        IDENTITY_TRUST: trust,
        IDENTITY_KEY: keys[name].privateKey,
        ...(name === "users" ? { USERS_BOOTSTRAP_SECRET: bootstrapSecret } : {}),
        ...options.common,
        ...env[name],
      },
    });
    instances.push({ name, proc: p });
    // 120 s: CI runs several packages' process-starting tests at once on two cores.
    const port = (await startLine(name, p, "listening")).port as number;
    await startLine(name, p, "announced");
    return { proc: p, url: `http://127.0.0.1:${port}` };
  };
  const start = async (name: Name) => {
    const { proc, url } = await spawn(name);
    procs[name] = proc;
    urls[name] = url;
    return proc;
  };
  let gateway: Gateway | undefined;
  /** Stops what runs and removes what this mesh created (streams, bucket, databases). */
  const teardown = async () => {
    // The processes go first and whatever else fails: a mesh left running loads Postgres and NATS
    // for every later run (each is also killed when this process exits, see startProcess).
    try {
      await gateway?.stop();
    } finally {
      await Promise.all(
        instances
          .filter(({ proc }) => proc.child.exitCode === null)
          .map(({ proc }) => proc.stop("SIGTERM", 15_000)),
      );
    }
    const nc = await connectNats(natsUrl, "cleanup");
    const jsm = await jetstreamManager(nc);
    // LEGACY and DLQ_USERS/DLQ_ORDERS: users and orders declare the strangler's capture stream
    // and their consumers' dead letters whether or not a monolith runs.
    for (const s of [
      "USERS",
      "INVENTORY",
      "PAYMENTS",
      "ORDERS",
      "DLQ_NOTIFICATIONS",
      "LEGACY",
      "LEGACY_USERS",
      "DLQ_USERS",
      "DLQ_ORDERS",
      "DLQ_INVENTORY",
    ])
      await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
    for (const s of ["inventory", "orders", "gateway"])
      await jsm.streams.delete(`KV_${cacheBucket(namespace, s)}`).catch(() => {});
    await removeRegistry(nc, bucket);
    await nc.close();
    for (const d of Object.values(dbs)) await d.drop();
  };
  let url: string;
  try {
    // Notifications first: it declares the streams it consumes too.
    for (const s of ["notifications", "users", "inventory", "payments", "orders"] as const) await start(s);
    gateway = createGateway({
      ...(options.gatewayLogger ? { logger: options.gatewayLogger } : {}),
      config: loadConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: options.gatewayLogLevel ?? "silent",
        NATS_URL: natsUrl,
        // The gateway's JWKS cache bucket is this mesh's too.
        EVENTS_NAMESPACE: namespace,
        DISCOVERY_BUCKET: bucket,
        DISCOVERY_TTL_MS: "2000",
        JWKS_URL: `${urls.users}/.well-known/jwks.json`,
        IDENTITY_KEY: keys.gateway.privateKey,
        // Registry entries only as each service signed them.
        IDENTITY_TRUST: trust,
        ...options.gateway,
      }),
      logger: options.gatewayLogger,
    });
    ({ url } = await gateway.start());
  } catch (err) {
    // A mesh that failed to start leaves nothing behind either.
    await teardown().catch(() => {});
    throw err;
  }
  const started = gateway;
  const routable = async (name: Name) => {
    await waitFor(
      () =>
        started.upstreams.clusters.get(name)?.some((e) => e.health === "SERVING" && e.url === urls[name]) ??
        false,
      { what: `${name} routable at the gateway` },
    );
  };
  // Every service routable before a test calls through the gateway: CI (load ~55) failed a first
  // CreateProduct with 'no endpoint for cluster inventory' when only orders had been waited for.
  try {
    await Promise.all(SERVICES.map(routable));
  } catch (err) {
    await teardown().catch(() => {});
    throw err;
  }
  const edge = createGrpcTransport({ baseUrl: url });
  const clients = {
    users: createClient(UserService, edge),
    inventory: createClient(InventoryService, edge),
    payments: createClient(PaymentService, edge),
    orders: createClient(OrderService, edge),
    notifications: createClient(NotificationService, edge),
  };

  /** Registers (if new) and logs in; returns the user id and the call options with its token. */
  const login = async (email: string) => {
    await clients.users
      .registerUser({ email, password: "a long password", displayName: email })
      .catch(() => {});
    const res = await clients.users.login({ email, password: "a long password" });
    return { id: res.user?.id ?? "", auth: { headers: { authorization: `Bearer ${res.accessToken}` } } };
  };

  const ADMIN = { email: "admin@example.com", password: "the first admin of this mesh" };
  let adminCreated: Promise<unknown> | undefined;
  /** The mesh's admin: created once through CreateFirstAdmin with the bootstrap secret, then logged in. */
  const admin = async () => {
    adminCreated ??= clients.users.createFirstAdmin({ bootstrapSecret, ...ADMIN, displayName: "Admin" });
    await adminCreated;
    const res = await clients.users.login(ADMIN);
    return { id: res.user?.id ?? "", auth: { headers: { authorization: `Bearer ${res.accessToken}` } } };
  };

  return {
    namespace,
    /** The identity keys of the gateway and of every service (tests sign assertions with them). */
    keys,
    bootstrapSecret,
    admin,
    dbs,
    procs,
    urls,
    gatewayUrl: url,
    clients,
    login,
    start,
    /** Starts another instance of `name` (a replica); `procs` and `urls` keep the first. */
    spawn,
    instances,
    /** The registry bucket of this mesh. */
    bucket,
    /** The endpoint URLs the gateway has for `name` (from the registry), with their health. */
    endpoints: (name: string) =>
      (started.upstreams.clusters.get(name) ?? []).map((e) => ({ url: e.url, health: e.health })),
    /** Waits until the gateway routes to a SERVING instance of `name` again. */
    routable,
    /**
     * What to read when a test fails: the gateway's view of each cluster and the last `n` output
     * lines of every service (a failure on a loaded CI machine cannot be re-run to look).
     */
    diagnose(n = 40): string {
      const out: string[] = [];
      for (const s of SERVICES) {
        const eps = (started.upstreams.clusters.get(s) ?? []).map((e) => `${e.url} ${e.health}`).join(", ");
        out.push(`== ${s} (gateway sees: ${eps || "none"})`);
        // Every instance, the killed ones and one that never came up included: a restart that
        // hung showed only the killed instance's lines when this printed `procs` alone.
        instances
          .filter((i) => i.name === s)
          .forEach(({ proc }, k) => {
            out.push(
              `-- ${s} instance ${k + 1}, pid ${proc.child.pid}, ${exitOf(proc)}`,
              ...proc.lines.slice(-n),
            );
          });
      }
      return out.join("\n");
    },
    stop: teardown,
  };
}

export type Mesh = Awaited<ReturnType<typeof startMesh>>;
