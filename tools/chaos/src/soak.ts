import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { startMesh } from "@meshwork/e2e";
import { cleanups, startPrivateInfra } from "./infra.js";
import { defaultWarmupS, type SoakVerdict, type SoakWindow, soakVerdict } from "./soak-verdict.js";

export interface SoakOptions {
  minutes: number;
  /** Orders per second; absent: half the rate measured first with `probeSeconds` of closed-loop load. */
  rate?: number;
  probeSeconds: number;
  /** Seconds from the start of the load left out of the latency and memory verdict (default: a fifth of the run, at most 5 minutes). */
  warmupS?: number;
  say: (line: string) => void;
}

export interface SoakReport {
  maxRate?: number;
  rate: number;
  windows: SoakWindow[];
  verdict: SoakVerdict;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rssMb = (pid: number | undefined): number | undefined => {
  if (!pid) return undefined;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
};
const quantile = (sorted: number[], q: number) =>
  sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number);

/**
 * PlaceOrder through the gateway at a steady rate (half the measured maximum unless given) for
 * `minutes`, on private NATS and Postgres; per window (a minute, or a fifth of a short run): p50,
 * p99, errors and the RSS of every process (the services, and the driver with the gateway in it).
 */
export async function runSoak(o: SoakOptions): Promise<SoakReport> {
  const infra = await startPrivateInfra();
  const previousPg = process.env.MESHWORK_TEST_PG_URL;
  process.env.MESHWORK_TEST_PG_URL = infra.postgresUrl;
  let mesh: Awaited<ReturnType<typeof startMesh>> | undefined;
  const cleanup = async () => {
    if (previousPg === undefined) delete process.env.MESHWORK_TEST_PG_URL;
    else process.env.MESHWORK_TEST_PG_URL = previousPg;
    for (const { proc } of mesh?.instances ?? [])
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    await mesh?.stop().catch(() => {});
    await infra.remove();
  };
  cleanups.add(cleanup);
  try {
    mesh = await startMesh({}, { natsUrl: infra.natsUrl, gateway: { AUTH_RATE_LIMITS: "off" } });
    const m = mesh;
    const admin = await m.admin();
    const products: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { product } = await m.clients.inventory.createProduct(
        {
          sku: `SOAK-${i}-${randomUUID().slice(0, 6)}`,
          name: `soak ${i}`,
          price: { amountMinor: 1_000n, currency: "EUR" },
          initialStock: 1_000_000_000n,
        },
        admin.auth,
      );
      products.push(product?.id ?? "");
    }
    const users = await Promise.all(
      Array.from({ length: 4 }, (_, i) => m.login(`soak-${i}-${randomUUID().slice(0, 6)}@example.com`)),
    );
    let n = 0;
    const place = async () => {
      const i = n++;
      const user = users[i % users.length];
      const t = performance.now();
      await m.clients.orders.placeOrder(
        {
          idempotencyKey: randomUUID(),
          items: [{ productId: products[i % products.length] ?? "", quantity: 1n }],
        },
        { ...user?.auth, timeoutMs: 10_000 },
      );
      return performance.now() - t;
    };
    let maxRate: number | undefined;
    let rate = o.rate ?? 0;
    if (!o.rate) {
      let done = 0;
      const until = Date.now() + o.probeSeconds * 1000;
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (Date.now() < until) {
            await place().catch(() => {});
            done++;
          }
        }),
      );
      maxRate = done / o.probeSeconds;
      rate = maxRate / 2;
      o.say(
        `max rate (16 concurrent callers, ${o.probeSeconds} s): ${maxRate.toFixed(1)} orders/s; soaking at ${rate.toFixed(1)}/s`,
      );
    }
    const totalMs = o.minutes * 60_000;
    const warmupS = o.warmupS ?? defaultWarmupS(totalMs / 1000);
    o.say(`warm-up: the first ${warmupS.toFixed(0)} s are left out of the latency and memory verdict`);
    const windowMs = Math.min(60_000, totalMs / 5);
    const windows: SoakWindow[] = [];
    const began = Date.now();
    let lat: number[] = [];
    let errors = 0;
    const inflight = new Set<Promise<void>>();
    let nextWindow = began + windowMs;
    const sample = () => {
      const sorted = [...lat].sort((a, b) => a - b);
      const rss: Record<string, number> = { "driver+gateway": process.memoryUsage().rss / 1_048_576 };
      for (const [name, p] of Object.entries(m.procs)) {
        const v = rssMb(p.child.pid);
        if (v !== undefined) rss[name] = v;
      }
      const w = {
        atS: (Date.now() - began) / 1000,
        calls: lat.length + errors,
        errors,
        p50Ms: quantile(sorted, 0.5),
        p99Ms: quantile(sorted, 0.99),
        rssMb: rss,
        load1: loadavg()[0] ?? 0,
      };
      windows.push(w);
      o.say(
        `  ${w.atS.toFixed(0)} s: ${w.calls} calls, ${w.errors} errors, p50 ${w.p50Ms.toFixed(1)} ms, p99 ${w.p99Ms.toFixed(1)} ms, load ${w.load1.toFixed(1)}, RSS ${Object.entries(
          rss,
        )
          .map(([k2, v]) => `${k2} ${v.toFixed(0)}`)
          .join(", ")} MB`,
      );
      lat = [];
      errors = 0;
    };
    for (let k = 0; ; k++) {
      const due = began + (k * 1000) / rate;
      if (due >= began + totalMs) break;
      while (Date.now() < due) {
        if (Date.now() >= nextWindow) {
          sample();
          nextWindow += windowMs;
        }
        await sleep(Math.max(0, Math.min(due - Date.now(), 50)));
      }
      const call: Promise<void> = place().then(
        (ms) => {
          lat.push(ms);
        },
        () => {
          errors++;
        },
      );
      inflight.add(call);
      void call.finally(() => inflight.delete(call));
    }
    await Promise.all(inflight);
    sample();
    return {
      ...(maxRate !== undefined ? { maxRate } : {}),
      rate,
      windows,
      verdict: soakVerdict(windows, { warmupS }),
    };
  } finally {
    cleanups.delete(cleanup);
    await cleanup();
  }
}

export function formatSoak(r: SoakReport, loadAverage: number[]): string {
  const v = r.verdict;
  return [
    `soak report: ${r.windows.length} windows at ${r.rate.toFixed(1)} orders/s${r.maxRate ? ` (half the measured max ${r.maxRate.toFixed(1)}/s)` : ""}; load average ${loadAverage.map((x) => x.toFixed(1)).join(" ")}`,
    `judged: ${v.judgedWindows} of ${r.windows.length} windows, those after a ${v.warmupS.toFixed(0)} s warm-up (errors count over the whole run)`,
    `errors: ${v.errors}; p99 drift (last third vs first, after warm-up): ${(v.p99Drift * 100).toFixed(0)}% (goal <= 20%)`,
    `memory growth after the warm-up (fitted): ${Object.entries(v.memoryGrowthMb)
      .map(([k, g]) => `${k} ${g.toFixed(1)} MB`)
      .join(", ")}`,
    v.pass ? "verdict: PASS" : `verdict: FAIL (${v.reasons.join("; ")})`,
  ].join("\n");
}
