import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseLogLine, type StoredLogLine, type StoredTrace, type TraceSummary } from "@meshwork/tracestore";
import { receiverFile } from "./local-telemetry.js";
import { renderLogLines, renderTraceList, renderWaterfall } from "./waterfall.js";

/** Where the commands find the running mesh's receiver. */
export interface ReceiverLookup {
  /** `--receiver URL`, else `MESHWORK_RECEIVER_URL`, else what `meshctl up` noted, else 127.0.0.1:4318. */
  receiver?: string;
  home: string;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/** The receiver URL the commands talk to. */
export function receiverUrl(o: Pick<ReceiverLookup, "receiver" | "home">): string {
  if (o.receiver) return o.receiver.replace(/\/$/, "");
  if (process.env.MESHWORK_RECEIVER_URL) return process.env.MESHWORK_RECEIVER_URL.replace(/\/$/, "");
  try {
    return (JSON.parse(readFileSync(receiverFile(o.home), "utf8")) as { url: string }).url;
  } catch {
    return "http://127.0.0.1:4318";
  }
}

class CommandError extends Error {}

async function getJson<T>(base: string, path: string): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CommandError(
      `no trace receiver answers at ${base} (${(err as Error).message}): is \`meshctl up\` running? (--receiver URL)`,
    );
  }
  const body = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new CommandError(body.error ?? `${res.status} from ${base}${path}`);
  return body;
}

async function run(o: ReceiverLookup, body: (base: string) => Promise<number>): Promise<number> {
  try {
    return await body(receiverUrl(o));
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    o.err.write(`${err.message}\n`);
    return 1;
  }
}

/** `meshctl traces [--limit N] [--service NAME]` */
export function tracesCommand(o: ReceiverLookup & { limit?: number; service?: string }): Promise<number> {
  return run(o, async (base) => {
    const q = new URLSearchParams({ limit: String(o.limit ?? 20) });
    if (o.service) q.set("service", o.service);
    const { traces } = await getJson<{ traces: TraceSummary[] }>(base, `/api/traces?${q}`);
    o.out.write(traces.length ? `${renderTraceList(traces)}\n` : `no traces yet at ${base}\n`);
    return 0;
  });
}

/** The attribute keys `--order` looks for: an explicit order id, or the placement saga's id (the order id). */
export const ORDER_ATTRIBUTES = ["order.id", "saga.id"];

/** `meshctl trace <trace-id | --last | --order ID>` */
export function traceCommand(
  o: ReceiverLookup & { traceId?: string; last?: boolean; order?: string; width?: number },
): Promise<number> {
  return run(o, async (base) => {
    let id = o.traceId;
    if (!id) {
      const q = new URLSearchParams({ limit: "1" });
      for (const key of o.order !== undefined ? ORDER_ATTRIBUTES : [])
        q.append("attribute", `${key}=${o.order}`);
      const { traces } = await getJson<{ traces: TraceSummary[] }>(base, `/api/traces?${q}`);
      if (!traces[0]) {
        throw new CommandError(
          o.order !== undefined ? `no trace of order ${o.order} in the store` : "no traces yet",
        );
      }
      id = traces[0].traceId;
    }
    const { trace } = await getJson<{ trace: StoredTrace }>(base, `/api/traces/${encodeURIComponent(id)}`);
    o.out.write(`${renderWaterfall(trace, o.width ? { barWidth: o.width } : {}).join("\n")}\n`);
    return 0;
  });
}

/**
 * `meshctl logs --trace ID`: from the running mesh's receiver, or, when none answers, from the
 * log files the last `meshctl up` wrote under `<home>/logs/`.
 */
export async function logsCommand(o: ReceiverLookup & { traceId: string }): Promise<number> {
  const id = o.traceId.toLowerCase();
  if (!/^[0-9a-f]{32}$/.test(id)) {
    o.err.write("--trace takes a trace id: 32 hex digits\n");
    return 2;
  }
  let lines: StoredLogLine[];
  try {
    lines = (await getJson<{ lines: StoredLogLine[] }>(receiverUrl(o), `/api/logs?trace_id=${id}`)).lines;
  } catch (err) {
    if (!(err instanceof CommandError)) throw err;
    const files = logFiles(o.home);
    if (files.length === 0) {
      o.err.write(`${err.message}\n`);
      return 1;
    }
    lines = linesFromFiles(files, id);
  }
  o.out.write(lines.length ? `${renderLogLines(lines).join("\n")}\n` : `no log line carries trace ${id}\n`);
  return 0;
}

function logFiles(home: string): string[] {
  const dir = join(home, "logs");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".log"))
    .map((f) => join(dir, f));
}

/** Lines of the log files that carry `traceId`, in time order. */
export function linesFromFiles(files: readonly string[], traceId: string): StoredLogLine[] {
  const out: StoredLogLine[] = [];
  for (const file of files) {
    const service = file.replace(/^.*\//, "").replace(/\.log$/, "");
    for (const raw of readFileSync(file, "utf8").split("\n")) {
      if (!raw.includes(traceId)) continue;
      const line = parseLogLine(service, raw, 0);
      if (line.traceId === traceId) out.push(line);
    }
  }
  return out.sort((a, b) => a.timeMs - b.timeMs);
}
