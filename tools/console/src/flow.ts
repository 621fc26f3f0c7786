import { create } from "@bufbuild/protobuf";
import {
  type GetFlowMapResponse,
  GetFlowMapResponseSchema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import type { StoredSpan, StoredTrace } from "@meshwork/tracestore";

interface Edge {
  from: string;
  to: string;
  kind: "rpc" | "query" | "publish" | "consume";
  calls: number;
  errors: number;
}

const str = (v: unknown) => (typeof v === "string" ? v : undefined);

/**
 * The mesh as the traces show it: an `rpc` edge from a span's service to a child span's other
 * service (counted on the callee's SERVER span), a `query` edge from a service to the database of
 * its database spans, `publish` from a service to the subject of its PRODUCER spans and `consume`
 * from a subject to the service of each CONSUMER span. Errors are spans with status error.
 */
export function flowMap(traces: readonly StoredTrace[]): GetFlowMapResponse {
  const edges = new Map<string, Edge>();
  const nodes = new Map<string, { kind: string; label: string }>();
  const node = (id: string, kind: string, label: string) => {
    if (!nodes.has(id)) nodes.set(id, { kind, label });
    return id;
  };
  const count = (from: string, to: string, kind: Edge["kind"], s: StoredSpan) => {
    const key = `${from}>${to}>${kind}`;
    const e = edges.get(key) ?? { from, to, kind, calls: 0, errors: 0 };
    e.calls++;
    if (s.status.code === "error") e.errors++;
    edges.set(key, e);
  };
  let first = Number.POSITIVE_INFINITY;
  let last = 0;
  for (const t of traces) {
    const all = [...t.spans, ...(t.linked ?? [])];
    const byId = new Map(all.map((s) => [s.spanId, s]));
    for (const s of all) {
      const start = Number(BigInt(s.startTimeUnixNano) / 1_000_000n);
      first = Math.min(first, start);
      last = Math.max(last, start + s.durationMs);
      const service = node(`service:${s.service}`, "service", s.service);
      const db = str(s.attributes["db.namespace"]) ?? str(s.attributes["db.name"]);
      const subject = str(s.attributes["messaging.destination.name"]);
      if (s.kind === "client" && db) {
        count(service, node(`database:${db}`, "database", db), "query", s);
      } else if (s.kind === "producer" && subject) {
        count(service, node(`subject:${subject}`, "subject", subject), "publish", s);
      } else if (s.kind === "consumer" && subject) {
        count(node(`subject:${subject}`, "subject", subject), service, "consume", s);
      } else if (s.kind === "server" && s.parentSpanId) {
        const parent = byId.get(s.parentSpanId);
        if (parent && parent.service !== s.service)
          count(node(`service:${parent.service}`, "service", parent.service), service, "rpc", s);
      }
    }
  }
  const windowSeconds = traces.length && last > first ? (last - first) / 1000 : 0;
  return create(GetFlowMapResponseSchema, {
    nodes: [...nodes.entries()]
      .map(([id, n]) => ({ id, ...n }))
      .filter((n) => [...edges.values()].some((e) => e.from === n.id || e.to === n.id))
      .sort((a, b) => a.id.localeCompare(b.id)),
    edges: [...edges.values()]
      .sort((a, b) => `${a.from}>${a.to}`.localeCompare(`${b.from}>${b.to}`))
      .map((e) => ({
        ...e,
        calls: BigInt(e.calls),
        errors: BigInt(e.errors),
        ratePerSecond: windowSeconds > 0 ? e.calls / windowSeconds : 0,
      })),
    traces: traces.length,
    windowSeconds,
  });
}
