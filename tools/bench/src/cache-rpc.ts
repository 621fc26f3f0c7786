/**
 * `npm run bench` scenario (issue 18.5): inventory's real GetProduct over RPC, through its product
 * cache, per tier, against the uncached read, in one run on the machine's Postgres and NATS.
 *
 * h2load drives each inventory process (pinned apart when taskset works) with Connect GET
 * requests (`?connect=v1&encoding=json&message={"id":...}`) read from a file of URIs, one per
 * product (1,000), so consecutive requests name different keys: no single-flight merging, and each
 * request meets the tier under test. One inventory process per tier, each with its own events
 * namespace (its own NATS KV bucket), the cache set so that every read lands in that tier:
 *
 * - uncached: no shared tier, an L1 too small to hold a product: every read is the query.
 * - miss: NATS KV, L1 too small, values expiring at once: L1 miss, L2 miss, the query, L2 filled.
 * - L2 hit: NATS KV, L1 too small: every read finds the product in NATS KV.
 * - L1 hit: the defaults: every read finds the product in the process.
 *
 * Each tier: a warm-up (which also fills the tiers), the max rate (h2load flat out), then the
 * latency at half of that tier's max rate (PACERS h2load processes at a fixed rate, p50 / p99 from
 * their logs). The cache's own counts (from the process's /metrics) are printed, so a tier that
 * did not behave as intended shows. MESHWORK_BENCH_DURATION_S sets each run's length.
 */

import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { cacheBucket } from "@meshwork/cache";
import { openDatabase } from "@meshwork/db";
import { connectNats, streamName } from "@meshwork/events";
import {
  createTestDatabase,
  freePort,
  type ManagedProcess,
  startProcess,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
// The inventory service's own store and schema, to seed the products without an admin.
import { createInventoryStore } from "../../../apps/inventory/dist/adapters/db/inventory-store.js";
import { schema } from "../../../apps/inventory/dist/adapters/db/schema.js";
import {
  ensureH2load,
  type H2loadLogEntry,
  parseLatencyLog,
  runFixedRate,
  runMaxRate,
  summarizeLatencies,
} from "./h2load.js";
import { readSettings } from "./settings.js";

const PRODUCTS = 1_000;
/**
 * h2load processes that share the fixed-rate run, each on one connection with the products in
 * its own rotated order (so no two ask for the same product at once: no single-flight merging).
 * h2load paces `--rps` in bursts every 10 ms: with one connection, half of the L1 tier's max
 * arrived as one burst of ~1% of a second's requests every 10 ms, and the last of each burst
 * waited for the whole burst, so the cached tiers' p99 measured h2load's pacing (4-7x the
 * uncached read's, whose rate and bursts are ten times smaller). Eight pacers started 1 ms apart
 * send bursts eight times smaller, interleaved.
 */
const PACERS = 8;
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const inventoryMain = fileURLToPath(new URL("../../../apps/inventory/dist/main.js", import.meta.url));
const migrations = fileURLToPath(new URL("../../../apps/inventory/drizzle", import.meta.url));
const METHOD = "/meshwork.inventory.v1.InventoryService/GetProduct";
const log = (line: string) => console.log(line);

interface Tier {
  name: string;
  env: Record<string, string>;
}

const TIERS: Tier[] = [
  { name: "uncached", env: { CACHE_SHARED: "none", CACHE_MAX_BYTES: "1" } },
  { name: "miss", env: { CACHE_SHARED: "nats", CACHE_MAX_BYTES: "1", CACHE_TTL_MS: "0" } },
  { name: "L2 hit", env: { CACHE_SHARED: "nats", CACHE_MAX_BYTES: "1" } },
  { name: "L1 hit", env: { CACHE_SHARED: "nats" } },
];

interface TierResult {
  name: string;
  maxRate: number;
  p50Ms: number;
  p99Ms: number;
  achievedRate: number;
  failed: number;
  counts: string;
}

async function pinning(): Promise<{ server: string[]; load: string[] | undefined }> {
  if (availableParallelism() < 2) return { server: [], load: undefined };
  try {
    await promisify(execFile)("taskset", ["-c", "0", "true"]);
    return { server: ["taskset", "-c", "0"], load: ["taskset", "-c", "1"] };
  } catch {
    return { server: [], load: undefined };
  }
}

/** Streams of the one connection: what the other scenarios spread over their connections. */
const STREAMS = (s: { clients: number; streams: number }) => Math.min(100, s.clients * s.streams);

interface Counts {
  l1Hit: number;
  l1Miss: number;
  l2Hit: number;
  l2Miss: number;
  loads: number;
  outages: number;
}

/** The product cache's counts of a process, from its /metrics (libs/cache's series). */
async function cacheCounts(url: string): Promise<Counts> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const sum = (prefix: string, ...parts: string[]) =>
    text
      .split("\n")
      .filter((l) => l.startsWith(prefix) && parts.every((p) => l.includes(p)))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
  const req = (tier: string, result: string) =>
    sum("cache_requests_total{", `tier="${tier}"`, `result="${result}"`);
  return {
    l1Hit: req("l1", "hit"),
    l1Miss: req("l1", "miss"),
    l2Hit: req("l2", "hit"),
    l2Miss: req("l2", "miss"),
    loads: sum("cache_loads_total{"),
    outages: sum("cache_shared_outages_total{"),
  };
}

function cacheDelta(a: Counts, b: Counts): Counts {
  return {
    l1Hit: b.l1Hit - a.l1Hit,
    l1Miss: b.l1Miss - a.l1Miss,
    l2Hit: b.l2Hit - a.l2Hit,
    l2Miss: b.l2Miss - a.l2Miss,
    loads: b.loads - a.loads,
    outages: b.outages - a.outages,
  };
}

/** What the cache did during the max-rate run, so a tier that did not behave as meant shows. */
function describeCounts(c: Counts, requests: number): string {
  return (
    `${requests} requests: L1 ${c.l1Hit} hit / ${c.l1Miss} miss, L2 ${c.l2Hit} hit / ${c.l2Miss} miss, ` +
    `${c.loads} loads` +
    (c.outages > 0 ? `, ${c.outages} shared-tier outages (its deadline was missed)` : "")
  );
}

async function main(): Promise<void> {
  const settings = readSettings();
  log("== cache over RPC: inventory's GetProduct per cache tier, against the uncached read ==");
  const h2load = await ensureH2load({ log });
  if (!h2load) {
    log("cannot run the cache RPC bench without h2load");
    process.exitCode = 1;
    return;
  }
  const pin = await pinning();
  const work = await mkdtemp(join(tmpdir(), "mw-bench-cache-"));
  const db = await createTestDatabase("mw_benchcrpc");
  const namespaces: string[] = [];
  let proc: ManagedProcess | undefined;
  const results: TierResult[] = [];
  try {
    const database = await openDatabase(
      {
        url: db.url,
        dataDir: "unused",
        pool: { max: 4, idleTimeoutS: 5, maxLifetimeS: 60, connectTimeoutS: 5 },
      },
      schema,
    );
    const ids: string[] = [];
    try {
      await database.migrate(migrations);
      const store = createInventoryStore(database.db, { namespace: "" });
      for (let i = 0; i < PRODUCTS; i++) {
        const p = await store.createProduct({
          id: randomUUID(),
          sku: `BR-${i}-${randomUUID().slice(0, 6)}`,
          name: `Product ${i}`,
          priceMinor: 1_000 + i,
          currency: "EUR",
          onHand: 100,
        });
        ids.push(p.id);
      }
    } finally {
      await database.close();
    }

    // MESHWORK_BENCH_CACHE_TIERS="uncached,L1 hit" runs only those (uncached first, for the ratios).
    const only = process.env.MESHWORK_BENCH_CACHE_TIERS?.split(",").map((t) => t.trim());
    // MESHWORK_BENCH_CPU_PROF=DIR: each inventory process writes a CPU profile there.
    const prof = process.env.MESHWORK_BENCH_CPU_PROF;
    for (const tier of TIERS.filter((t) => !only || only.includes(t.name))) {
      const namespace = `${uniqueName("bc")}.`;
      namespaces.push(namespace);
      const [command, ...prefix] = [...pin.server, process.execPath];
      // A port chosen here: at LOG_LEVEL warn (no line per call) there is no "listening" line.
      const port = await freePort();
      const profArgs = prof ? [`--cpu-prof`, `--cpu-prof-dir=${prof}`] : [];
      proc = startProcess(command as string, [...prefix, ...profArgs, inventoryMain], {
        env: {
          PORT: String(port),
          DATABASE_URL: db.url,
          DB_POOL_MAX: "20",
          NATS_URL: natsUrl,
          EVENTS_NAMESPACE: namespace,
          DISCOVERY: "static",
          LOG_LEVEL: "warn",
          // A NATS KV call past this deadline counts as an outage (reads go to Postgres meanwhile):
          // generous, so a busy machine measures the tier rather than the outage handling.
          CACHE_SHARED_TIMEOUT_MS: "1000",
          ...tier.env,
        },
      });
      const url = `http://127.0.0.1:${port}`;
      const uris = join(work, "uris.txt");
      const lines = ids.map(
        (id) =>
          `${url}${METHOD}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ id }))}`,
      );
      await writeFile(uris, lines.join("\n"));
      // One request by hand, once the process answers: the answer must be the product.
      const one = `${url}${METHOD}?connect=v1&encoding=json&message=${encodeURIComponent(JSON.stringify({ id: ids[0] }))}`;
      const started = proc;
      await waitFor(
        async () => {
          if (started.child.exitCode !== null)
            throw new Error(`inventory exited: ${started.lines.slice(-5).join("\n")}`);
          return fetch(one).then(
            (r) => r.ok,
            () => false,
          );
        },
        { what: `inventory (${tier.name}) answering`, timeoutMs: 60_000 },
      );
      const check = await fetch(one);
      const body = (await check.json()) as { product?: { id?: string } };
      if (check.status !== 200 || body.product?.id !== ids[0]) {
        throw new Error(
          `${tier.name}: GetProduct over Connect GET answered ${check.status} ${JSON.stringify(body)}`,
        );
      }
      // One connection: h2load's clients each go through the URIs from the first, in step, so
      // several would ask for the same product at once (one load for all: single-flight). Its
      // streams are the concurrency the other scenarios spread over their connections.
      const common = {
        url: `${url}${METHOD}`,
        bodyFile: "",
        inputFile: uris,
        headers: [],
        wrapper: pin.load,
        streams: STREAMS(settings),
      };
      const logFile = join(work, "latency.log");
      log(`- ${tier.name}: a read of each product, warm-up, max rate ${settings.durationMs / 1000}s ...`);
      // Fills the tiers (every product, for the hit tiers) before anything is measured.
      await runFixedRate({ ...common, clients: 1, rate: 1_000_000, requests: PRODUCTS, logFile }, 0);
      if (settings.warmUpMs > 0) {
        await runMaxRate({ ...common, clients: 1, durationMs: settings.warmUpMs, warmUpMs: 0 });
      }
      const before = await cacheCounts(url);
      const { summary, output } = await runMaxRate({
        ...common,
        clients: 1,
        durationMs: settings.durationMs,
        warmUpMs: 0,
      });
      const during = cacheDelta(before, await cacheCounts(url));
      const maxRate = summary.reqPerSec;
      for (const l of output.split("\n").filter((x) => /^(finished in|requests:|status codes:)/.test(x)))
        log(`  h2load: ${l}`);
      const rate = Math.max(1, Math.floor(maxRate / 2));
      log(
        `  max ${maxRate.toFixed(0)} req/s (${summary.requests.failed} failed); latency at ${rate} req/s ...`,
      );
      const pacerRate = rate / PACERS;
      const pacers = await Promise.all(
        Array.from({ length: PACERS }, async (_, i) => {
          const file = join(work, `uris-${i}.txt`);
          const from = Math.floor((i * ids.length) / PACERS);
          await writeFile(file, [...lines.slice(from), ...lines.slice(0, from)].join("\n"));
          await new Promise((r) => setTimeout(r, i)); // 1 ms apart: their bursts interleave
          return runFixedRate(
            {
              ...common,
              inputFile: file,
              clients: 1,
              rate: pacerRate,
              requests: Math.round((pacerRate * settings.durationMs) / 1000),
              logFile: join(work, `latency-${i}.log`),
            },
            0,
          );
        }),
      );
      const entries: H2loadLogEntry[] = [];
      for (let i = 0; i < PACERS; i++)
        entries.push(...parseLatencyLog(await readFile(join(work, `latency-${i}.log`), "utf8")));
      const latency = summarizeLatencies(entries, Math.min(1000, settings.durationMs / 10));
      const fixed = { requests: { failed: pacers.reduce((n, p) => n + p.summary.requests.failed, 0) } };
      results.push({
        name: tier.name,
        maxRate,
        p50Ms: latency.p50Ms,
        p99Ms: latency.p99Ms,
        achievedRate: latency.achievedRate,
        failed: summary.requests.failed + fixed.requests.failed,
        counts: describeCounts(during, summary.requests.done),
      });
      await proc.stop();
      proc = undefined;
    }
  } finally {
    await proc?.stop();
    const nc = await connectNats(natsUrl, "bench-cleanup");
    const jsm = await jetstreamManager(nc);
    for (const ns of namespaces) {
      await jsm.streams.delete(streamName(ns, "INVENTORY")).catch(() => {});
      await jsm.streams.delete(`KV_${cacheBucket(ns, "inventory")}`).catch(() => {});
    }
    await nc.close();
    await db.drop();
    await rm(work, { recursive: true, force: true });
  }

  const uncached = results.find((r) => r.name === "uncached")?.maxRate ?? Number.NaN;
  log(
    `\ncache over RPC: GetProduct (Connect GET, ${PRODUCTS} products in turn), one connection of ${STREAMS(settings)} streams flat out, ` +
      `then at half each tier's max (${PACERS} h2load pacers, one connection each); load average ${loadavg()
        .map((l) => l.toFixed(1))
        .join(" ")}`,
  );
  log("tier        max req/s   vs uncached   at half max: p50 ms   p99 ms   (achieved req/s)");
  for (const r of results) {
    log(
      `${r.name.padEnd(10)} ${r.maxRate.toFixed(0).padStart(10)} ${(r.maxRate / uncached).toFixed(2).padStart(12)}x` +
        ` ${r.p50Ms.toFixed(2).padStart(20)} ${r.p99Ms.toFixed(2).padStart(8)}   (${r.achievedRate.toFixed(0)})` +
        (r.failed > 0 ? `  ${r.failed} FAILED` : ""),
    );
  }
  for (const r of results) log(`  ${r.name} (max-rate run): ${r.counts}`);
  if (results.some((r) => r.failed > 0)) process.exitCode = 1;
}

await main();
