import type { FlowEdge, FlowNode } from "@meshwork/contracts/meshwork/console/v1/console";
import { consoleApi, serviceColour, usePolled } from "./api.js";

const W = 170;
const H = 34;
const COL = 250;
const ROW = 58;

/** Columns by longest path from the nodes nothing calls (the gateway first), cycles cut. */
function layout(nodes: readonly FlowNode[], edges: readonly FlowEdge[]) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    let changed = false;
    for (const e of edges) {
      const d = (depth.get(e.from) ?? 0) + 1;
      if (d > (depth.get(e.to) ?? 0) && d < nodes.length) {
        depth.set(e.to, d);
        changed = true;
      }
    }
    if (!changed) break;
  }
  // Databases in a column of their own, after everything else.
  const deepest = Math.max(0, ...nodes.filter((n) => n.kind !== "database").map((n) => depth.get(n.id) ?? 0));
  for (const n of nodes) if (n.kind === "database") depth.set(n.id, deepest + 1);
  const columns = new Map<number, FlowNode[]>();
  for (const n of nodes) {
    const d = depth.get(n.id) ?? 0;
    columns.set(d, [...(columns.get(d) ?? []), n]);
  }
  const at = new Map<string, { x: number; y: number }>();
  for (const [d, list] of columns) {
    list.sort((a, b) => a.kind.localeCompare(b.kind) || a.label.localeCompare(b.label));
    list.forEach((n, i) => {
      at.set(n.id, { x: 20 + d * COL, y: 20 + i * ROW });
    });
  }
  const width = 40 + Math.max(0, ...[...columns.keys()]) * COL + W;
  const height = 40 + Math.max(1, ...[...columns.values()].map((l) => l.length)) * ROW;
  return { at, width, height };
}

function fill(n: FlowNode): string {
  if (n.kind === "service") return serviceColour(n.label);
  return n.kind === "database" ? "#5b6573" : "#8a4fd1";
}

/** The mesh as observed in recent traces, redrawn every few seconds. */
export function FlowMap() {
  const { value, error } = usePolled(() => consoleApi.getFlowMap({ traces: 100 }), 3000, []);
  const nodes = value?.nodes ?? [];
  const edges = value?.edges ?? [];
  const { at, width, height } = layout(nodes, edges);
  return (
    <section>
      <h2>Flow map</h2>
      {error && <p class="error">console API: {error}</p>}
      {value?.problem && <p class="error">{value.problem}</p>}
      <p class="note">
        From the {value?.traces ?? 0} most recent traces ({(value?.windowSeconds ?? 0).toFixed(0)} s): calls
        between services, queries to each database, events published to and consumed from each subject. Edge
        labels: calls · errors · calls per second.
      </p>
      <svg width={width} height={height} data-testid="flow-map" role="img" aria-label="flow map">
        <defs>
          <marker
            id="arrow"
            viewBox="0 0 10 10"
            refX="10"
            refY="5"
            markerWidth="7"
            markerHeight="7"
            orient="auto"
          >
            <path d="M0,0 L10,5 L0,10 z" fill="#8a94a3" />
          </marker>
        </defs>
        {edges.map((e) => {
          const a = at.get(e.from);
          const b = at.get(e.to);
          if (!a || !b) return null;
          const x1 = a.x + W;
          const y1 = a.y + H / 2;
          const x2 = b.x;
          const y2 = b.y + H / 2;
          const back = x2 <= x1;
          const path = back
            ? `M${a.x + W / 2},${a.y + H} C${a.x + W / 2},${a.y + H + 40} ${b.x + W / 2},${b.y + H + 40} ${b.x + W / 2},${b.y + H}`
            : `M${x1},${y1} C${x1 + 60},${y1} ${x2 - 60},${y2} ${x2},${y2}`;
          const errors = Number(e.errors);
          return (
            <g key={`${e.from}>${e.to}>${e.kind}`} data-testid="flow-edge" data-from={e.from} data-to={e.to}>
              <path
                d={path}
                fill="none"
                stroke={errors ? "#c0262d" : "#8a94a3"}
                stroke-width={1.5}
                stroke-dasharray={e.kind === "publish" || e.kind === "consume" ? "5 3" : undefined}
                marker-end="url(#arrow)"
              />
              <text
                x={x1 + (x2 - x1) * 0.55}
                y={y1 + (y2 - y1) * 0.55 - 4}
                paint-order="stroke"
                stroke="#f6f7f9"
                stroke-width={3}
                font-size="11"
                text-anchor="middle"
                fill={errors ? "#c0262d" : "#3b4452"}
              >
                {String(e.calls)} · {errors} err · {e.ratePerSecond.toFixed(2)}/s
              </text>
            </g>
          );
        })}
        {nodes.map((n) => {
          const p = at.get(n.id);
          if (!p) return null;
          return (
            <g key={n.id} data-testid="flow-node" data-id={n.id}>
              <rect
                x={p.x}
                y={p.y}
                width={W}
                height={H}
                rx={n.kind === "database" ? 12 : 4}
                fill={fill(n)}
                opacity={0.9}
              />
              <text x={p.x + W / 2} y={p.y + H / 2 + 4} font-size="12" text-anchor="middle" fill="#fff">
                {n.label.length > 26 ? `…${n.label.slice(-25)}` : n.label}
              </text>
            </g>
          );
        })}
      </svg>
    </section>
  );
}
