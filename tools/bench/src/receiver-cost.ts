/**
 * What the embedded receiver's store costs per span, in one process and without HTTP, so that a
 * change to `@meshwork/tracestore` can be judged on a loaded machine (issue 15.8): CPU per span
 * is as noisy as the machine, but the heap bytes allocated and retained per span are not.
 *
 * Request bodies are what the runtime's exporter sends in the bench's traced row: the telemetry's
 * `OtlpBytesSpanProcessor` (batches of 512) posting to a local HTTP server that only keeps the
 * bodies, one SERVER span per call, each the root of a trace of its own. Then each body is walked
 * (`encodedSpansFromProtobuf`) and stored (`TraceStore.addEncoded`) over and over, the store
 * keeping its default 1000 traces (so it evicts as under load). Figures:
 * - `CPU`: µs of process CPU per span stored (median of the rounds);
 * - `allocated`: heap bytes (V8 heap plus ArrayBuffers) allocated per span, measured over one
 *   pass with the young generation large enough that no GC runs in it (checked);
 * - `retained`: bytes kept per stored span, in V8's heap and in ArrayBuffers (the spans' bytes),
 *   after full GCs, with the store full.
 * `node --expose-gc --max-semi-space-size=128 tools/bench/dist/receiver-cost.js`;
 * `RECEIVER_COST_SPANS` spans captured (default 20480), `RECEIVER_COST_ROUNDS` (default 7).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { PerformanceObserver } from "node:perf_hooks";
import { createTelemetry, leanSpanStarter } from "@meshwork/telemetry";
import { encodedSpansFromProtobuf, TraceStore } from "@meshwork/tracestore";
import { type Attributes, ROOT_CONTEXT, SpanKind } from "@opentelemetry/api";

const spanCount = Number(process.env.RECEIVER_COST_SPANS ?? 20_480);
const rounds = Number(process.env.RECEIVER_COST_ROUNDS ?? 7);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with node --expose-gc (and --max-semi-space-size=128)");

const attributes: Attributes = Object.freeze({
  "rpc.system": "grpc",
  "rpc.service": "meshwork.users.v1.UserService",
  "rpc.method": "GetUser",
});

/** Export request bodies of `spanCount` root SERVER spans, as the runtime's exporter posts them. */
async function captureBodies(): Promise<Buffer[]> {
  const bodies: Buffer[] = [];
  let spans = 0;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks);
      bodies.push(body);
      spans += encodedSpansFromProtobuf(body).spans.length;
      res.writeHead(200, { "content-type": "application/x-protobuf" }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const telemetry = createTelemetry({
    serviceName: "bench-receiver-cost",
    tracesExporter: "otlp",
    otlpEndpoint: `http://127.0.0.1:${port}`,
    env: { OTEL_BSP_SCHEDULE_DELAY: "50", OTEL_BSP_MAX_QUEUE_SIZE: String(spanCount) },
  });
  const start = leanSpanStarter(telemetry.tracer);
  if (!start) throw new Error("leanSpanStarter does not recognise the SDK's tracer");
  for (let i = 0; i < spanCount; i++) {
    const span = start("meshwork.users.v1.UserService/GetUser", SpanKind.SERVER, attributes, ROOT_CONTEXT);
    span.setAttribute("rpc.grpc.status_code", 0);
    span.end();
    if (i % 512 === 511) await new Promise((resolve) => setImmediate(resolve));
  }
  await telemetry.shutdown();
  server.close();
  if (spans !== spanCount) throw new Error(`captured ${spans} spans of ${spanCount}`);
  return bodies;
}

function storeAll(store: TraceStore, bodies: readonly Buffer[]): void {
  for (const body of bodies) store.addEncoded(encodedSpansFromProtobuf(body).spans);
}

const heapBytes = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
};

let gcs = 0;
new PerformanceObserver((list) => {
  gcs += list.getEntries().length;
}).observe({ entryTypes: ["gc"] });
const flushGcEntries = () => new Promise((resolve) => setTimeout(resolve, 20));

const bodies = await captureBodies();
const store = new TraceStore();
storeAll(store, bodies); // warm-up, and the store is full from here on
const cpu: number[] = [];
for (let r = 0; r < rounds; r++) {
  const before = process.cpuUsage();
  storeAll(store, bodies);
  const used = process.cpuUsage(before);
  cpu.push((used.user + used.system) / spanCount);
}
// Allocation: one pass with no GC in it (a pass of 512 spans, repeated until one runs clean).
const pass = bodies.slice(0, 8);
const passSpans = pass.reduce((n, b) => n + encodedSpansFromProtobuf(b).spans.length, 0);
let allocated = Number.NaN;
for (let attempt = 0; attempt < 10 && Number.isNaN(allocated); attempt++) {
  gc();
  await flushGcEntries();
  const gcsBefore = gcs;
  const before = heapBytes();
  storeAll(store, pass);
  const after = heapBytes();
  await flushGcEntries();
  if (gcs === gcsBefore) allocated = (after - before) / passSpans;
}
// Retained: the full store against an empty one, each read after full GCs (ArrayBuffers are
// freed by a sweep that may finish after the GC returns: twice, with a turn of the event loop).
const settled = async () => {
  for (let i = 0; i < 2; i++) {
    gc();
    await flushGcEntries();
  }
  return process.memoryUsage();
};
const fresh = new TraceStore();
const empty = await settled();
storeAll(fresh, bodies.slice(-Math.ceil(fresh.maxTraces / 512) - 1));
const full = await settled();
const retained = (full.heapUsed - empty.heapUsed) / fresh.stats().spans;
const retainedOffHeap = (full.arrayBuffers - empty.arrayBuffers) / fresh.stats().spans;
const sorted = [...cpu].sort((a, b) => a - b);
console.log(
  `receiver store, ${spanCount} spans x ${rounds} rounds (${bodies.length} bodies): ` +
    `CPU ${sorted[Math.floor(rounds / 2)]?.toFixed(2)} µs/span (rounds ${cpu.map((c) => c.toFixed(2)).join(" ")}), ` +
    `allocated ${allocated.toFixed(0)} B/span, retained ${retained.toFixed(0)} B/span in V8's heap ` +
    `and ${retainedOffHeap.toFixed(0)} B/span in ArrayBuffers ` +
    `(${fresh.stats().spans} spans kept)`,
);
