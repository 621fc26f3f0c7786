import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type GetTraceResponse,
  GetTraceResponseSchema,
  type ListTracesRequest,
  type ListTracesResponse,
  ListTracesResponseSchema,
  type TraceSummary,
  TraceSummarySchema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import {
  type StoredLogLine,
  type TraceSummary as StoredSummary,
  type StoredTrace,
  spanRows,
} from "@meshwork/tracestore";

/** The trace receiver's JSON API (`meshctl up`'s, or any `@meshwork/tracestore` receiver). */
export class ReceiverClient {
  constructor(readonly url: string) {}

  async #get<T>(path: string): Promise<{ status: number; body: T & { error?: string } }> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, { signal: AbortSignal.timeout(5_000) });
    } catch (err) {
      throw new ConnectError(
        `the trace receiver at ${this.url} does not answer (${(err as Error).message})`,
        Code.Unavailable,
      );
    }
    return { status: res.status, body: (await res.json()) as T & { error?: string } };
  }

  async listTraces(req: ListTracesRequest): Promise<ListTracesResponse> {
    const limit = req.limit > 0 ? Math.min(req.limit, 1000) : 50;
    const filtered = Boolean(req.method || req.status || req.minDurationMs > 0);
    const q = new URLSearchParams({ limit: String(filtered ? 1000 : limit) });
    if (req.service) q.set("service", req.service);
    let traces: StoredSummary[];
    try {
      const { status, body } = await this.#get<{ traces: StoredSummary[] }>(`/api/traces?${q}`);
      if (status !== 200) throw new ConnectError(body.error ?? `receiver answered ${status}`, Code.Internal);
      traces = body.traces;
    } catch (err) {
      return create(ListTracesResponseSchema, { problem: ConnectError.from(err).rawMessage });
    }
    const method = req.method.toLowerCase();
    const kept = traces.filter(
      (t) =>
        (!method || t.rootName.toLowerCase().includes(method)) &&
        (!req.status || t.status === req.status || (req.status === "error" && t.errorCount > 0)) &&
        t.durationMs >= req.minDurationMs,
    );
    return create(ListTracesResponseSchema, { traces: kept.slice(0, limit).map(summaryMessage) });
  }

  /** The `limit` most recent whole traces (fetched eight at a time; one gone meanwhile is skipped). */
  async recentTraces(limit: number): Promise<StoredTrace[]> {
    const { status, body } = await this.#get<{ traces: StoredSummary[] }>(`/api/traces?limit=${limit}`);
    if (status !== 200) throw new ConnectError(body.error ?? `receiver answered ${status}`, Code.Internal);
    const out: StoredTrace[] = [];
    const ids = body.traces.map((t) => t.traceId);
    for (let i = 0; i < ids.length; i += 8) {
      const got = await Promise.all(
        ids.slice(i, i + 8).map((id) => this.#get<{ trace: StoredTrace }>(`/api/traces/${id}`)),
      );
      for (const g of got) if (g.status === 200) out.push(g.body.trace);
    }
    return out;
  }

  async getTrace(traceId: string): Promise<GetTraceResponse> {
    const id = traceId.toLowerCase();
    if (!/^[0-9a-f]{32}$/.test(id)) {
      throw new ConnectError(`trace_id: a trace id is 32 hex digits, not "${traceId}"`, Code.InvalidArgument);
    }
    const { status, body } = await this.#get<{ trace: StoredTrace }>(`/api/traces/${id}`);
    if (status === 404) throw new ConnectError(`trace ${id} is not in the store (yet)`, Code.NotFound);
    if (status !== 200) throw new ConnectError(body.error ?? `receiver answered ${status}`, Code.Internal);
    const logs = await this.#get<{ lines: StoredLogLine[] }>(`/api/logs?trace_id=${id}`);
    return traceMessage(body.trace, logs.status === 200 ? logs.body.lines : []);
  }
}

const nanoToMs = (nano: string) => Number(BigInt(nano) / 1000n) / 1000;

function summaryMessage(t: StoredSummary): TraceSummary {
  return create(TraceSummarySchema, {
    traceId: t.traceId,
    rootName: t.rootName,
    rootService: t.rootService,
    services: t.services,
    spanCount: t.spanCount,
    startTime: timestampFromMs(Math.floor(nanoToMs(t.startTimeUnixNano))),
    durationMs: t.durationMs,
    status: t.status,
    errorCount: t.errorCount,
  });
}

/** A stored trace as the page draws it: spans in waterfall order with offsets, log lines beside. */
export function traceMessage(trace: StoredTrace, lines: readonly StoredLogLine[]): GetTraceResponse {
  const start = nanoToMs(trace.summary.startTimeUnixNano);
  return create(GetTraceResponseSchema, {
    summary: summaryMessage(trace.summary),
    spans: spanRows(trace).map(({ span, depth, via }) => ({
      spanId: span.spanId,
      parentSpanId: span.parentSpanId ?? "",
      name: span.name,
      kind: span.kind,
      service: span.service,
      offsetMs: nanoToMs(span.startTimeUnixNano) - start,
      durationMs: span.durationMs,
      status: span.status.code,
      statusMessage: span.status.message ?? "",
      attributesJson: JSON.stringify(span.attributes),
      events: span.events.map((e) => ({
        name: e.name,
        offsetMs: nanoToMs(e.timeUnixNano) - start,
        attributesJson: JSON.stringify(e.attributes),
      })),
      depth,
      linked: via === "link",
    })),
    logs: lines.map((l) => ({
      offsetMs: l.timeMs - start,
      service: l.service,
      level: l.level,
      msg: l.msg,
      spanId: l.spanId ?? "",
      raw: l.raw,
    })),
  });
}
