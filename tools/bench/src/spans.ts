/**
 * What a traced call's SERVER span costs its process, in CPU per span (issue 15.8): the span the
 * runtime's telemetry interceptor makes (started under a remote parent with the route's frozen
 * attributes, given its status code, ended) and exported over OTLP/protobuf to the embedded
 * receiver in another process, as under `meshctl up`. Four ways, in alternating rounds, medians:
 * - `sdk`: the SDK's own `Tracer.startSpan`, exported as `OTEL_TRACES_EXPORTER=otlp` sets it up
 *   (`OtlpBytesSpanProcessor`: encoded when it ends, batches kept as bytes);
 * - `lean`: `leanSpanStarter` (what the interceptor uses), same tracer and pipeline;
 * - `lean+sdk`: `leanSpanStarter`, exported by the SDK's `BatchSpanProcessor` and OTLP/protobuf
 *   exporter instead (the export path before `OtlpBytesSpanProcessor`);
 * - `ids only`: tracing off (the id-only tracer), for scale.
 * Spans are made in bursts of 1000 with the event loop turned between them, so the exporter's
 * timers and sockets run as in a server; the CPU of the whole process is counted.
 * Last, the receiver's own CPU per span received (all ways together): in the bench's traced row
 * and under `meshctl up` it runs beside the services on the same cores.
 * `node tools/bench/dist/spans.js` (about half a minute; not part of `npm run bench`);
 * `SPANS_PER_ROUND` (default 100000), `SPANS_ROUNDS` (default 5), `SPANS_RECEIVER_PROFILE=<dir>`
 * (a CPU profile of the receiver process, written there).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { createTelemetry, leanSpanStarter } from "@meshwork/telemetry";
import {
  type Attributes,
  type Context,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  type Tracer,
  trace,
} from "@opentelemetry/api";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

const perRound = Number(process.env.SPANS_PER_ROUND ?? 100_000);
const rounds = Number(process.env.SPANS_ROUNDS ?? 5);
const name = "meshwork.users.v1.UserService/GetUser";
const attributes: Attributes = Object.freeze({
  "rpc.system": "grpc",
  "rpc.service": "meshwork.users.v1.UserService",
  "rpc.method": "GetUser",
});
/**
 * Remote parents of 4096 traces, taken in turn: the receiver then holds many traces and evicts
 * the oldest, as in the bench's traced row (one trace per call), rather than growing one trace.
 */
const parents = Array.from({ length: 4096 }, () =>
  trace.setSpanContext(ROOT_CONTEXT, {
    traceId: randomBytes(16).toString("hex"),
    spanId: randomBytes(8).toString("hex"),
    traceFlags: 1,
    isRemote: true,
  }),
);
let turn = 0;
const nextParent = () => parents[turn++ & 4095] as Context;

/**
 * The embedded receiver in a process of its own; resolves with its URL and a stop function,
 * which resolves with the receiver's CPU per span received (under `meshctl up`, and in the
 * bench's traced row, it shares the machine with the services: what it spends, they lose).
 */
async function startReceiverProcess(): Promise<{ url: string; stop: () => Promise<string> }> {
  const script = `import { startReceiver } from "@meshwork/tracestore";
const r = await startReceiver({ host: "127.0.0.1", port: 0 });
console.log(r.url);
const { user, system } = process.cpuUsage();
// Spans received, counted as the receiver hands them to its store.
let n = 0;
const addEncoded = r.traces.addEncoded.bind(r.traces);
r.traces.addEncoded = (spans) => ((n += spans.length), addEncoded(spans));
process.on("SIGTERM", () => {
  const used = process.cpuUsage({ user, system });
  console.log(n > 0 ? ((used.user + used.system) / n).toFixed(2) + " µs CPU per span received (" + n + " spans)" : "no spans received");
  r.close().then(() => process.exit(0));
});`;
  const child = spawn(
    process.execPath,
    [
      ...(process.env.SPANS_RECEIVER_PROFILE
        ? ["--cpu-prof", `--cpu-prof-dir=${process.env.SPANS_RECEIVER_PROFILE}`]
        : []),
      "--input-type=module",
      "-e",
      script,
    ],
    {
      cwd: fileURLToPath(new URL("..", import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the receiver exited (${code}) before listening`)));
    child.stdout.once("data", (d) => resolve(String(d).trim()));
  });
  const stop = () =>
    new Promise<string>((resolve) => {
      let out = "";
      child.stdout.on("data", (d) => (out += String(d)));
      child.once("exit", () => resolve(out.trim()));
      child.kill("SIGTERM");
    });
  return { url, stop };
}

function ending(span: Span): void {
  if (span.isRecording()) span.setAttribute("rpc.grpc.status_code", 0);
  span.end();
}

/** CPU µs per span over one round of `perRound` spans. */
async function round(makeSpan: () => void): Promise<number> {
  const before = process.cpuUsage();
  for (let i = 0; i < perRound; i += 1000) {
    for (let j = 0; j < 1000; j++) makeSpan();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const used = process.cpuUsage(before);
  return (used.user + used.system) / perRound;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

const receiver = await startReceiverProcess();
const traced = createTelemetry({
  serviceName: "bench-spans",
  tracesExporter: "otlp",
  otlpEndpoint: receiver.url,
  env: { OTEL_BSP_SCHEDULE_DELAY: "1000" },
});
const off = createTelemetry({ serviceName: "bench-spans-off", tracesExporter: "none" });
const sdkExport = createTelemetry({
  serviceName: "bench-spans-sdk-export",
  tracesExporter: "none",
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: `${receiver.url}/v1/traces` }), {
      scheduledDelayMillis: 1000,
    }),
  ],
});
try {
  const tracer: Tracer = traced.tracer;
  const lean = leanSpanStarter(tracer);
  const leanSdk = leanSpanStarter(sdkExport.tracer);
  if (!lean || !leanSdk) throw new Error("leanSpanStarter does not recognise the SDK's tracer");
  const ways: Record<string, () => void> = {
    sdk: () => ending(tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, nextParent())),
    lean: () => ending(lean(name, SpanKind.SERVER, attributes, nextParent())),
    "lean+sdk": () => ending(leanSdk(name, SpanKind.SERVER, attributes, nextParent())),
    "ids only": () => ending(off.tracer.startSpan(name, { kind: SpanKind.SERVER, attributes }, nextParent())),
  };
  const results = new Map<string, number[]>(Object.keys(ways).map((w) => [w, []]));
  for (const fn of Object.values(ways)) await round(fn); // warm-up
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? Object.keys(ways) : Object.keys(ways).reverse();
    for (const w of order) results.get(w)?.push(await round(ways[w] as () => void));
  }
  console.log(
    `CPU per SERVER span, exported over OTLP/protobuf (median of ${rounds} rounds of ${perRound}):`,
  );
  for (const [w, values] of results) {
    console.log(
      `${w.padEnd(10)} ${median(values).toFixed(2).padStart(7)} µs   rounds: ${values.map((v) => v.toFixed(2)).join(" ")}`,
    );
  }
} finally {
  await traced.shutdown();
  await sdkExport.shutdown();
  await off.shutdown();
  console.log(`receiver (its own process, every span of every way): ${await receiver.stop()}`);
}
