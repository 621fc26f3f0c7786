import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Span } from "@meshwork/contracts/meshwork/console/v1/console";
import { useState } from "preact/hooks";
import { consoleApi, formatMs, serviceColour, usePolled } from "./api.js";

/** The recent traces, filterable by service, method, status and duration. */
export function Traces() {
  const [service, setService] = useState("");
  const [method, setMethod] = useState("");
  const [status, setStatus] = useState("");
  const [minMs, setMinMs] = useState("");
  const { value, error } = usePolled(
    () => consoleApi.listTraces({ limit: 100, service, method, status, minDurationMs: Number(minMs) || 0 }),
    2000,
    [service, method, status, minMs],
  );
  return (
    <section>
      <h2>Traces</h2>
      <form class="filters" onSubmit={(e) => e.preventDefault()}>
        <input
          placeholder="service"
          value={service}
          onInput={(e) => setService(e.currentTarget.value)}
          data-testid="filter-service"
        />
        <input
          placeholder="method contains"
          value={method}
          onInput={(e) => setMethod(e.currentTarget.value)}
          data-testid="filter-method"
        />
        <select value={status} onChange={(e) => setStatus(e.currentTarget.value)} data-testid="filter-status">
          <option value="">any status</option>
          <option value="ok">ok</option>
          <option value="unset">unset</option>
          <option value="error">error</option>
        </select>
        <input
          placeholder="min ms"
          value={minMs}
          onInput={(e) => setMinMs(e.currentTarget.value)}
          size={6}
          data-testid="filter-duration"
        />
      </form>
      {error && <p class="error">console API: {error}</p>}
      {value?.problem && <p class="error">{value.problem}</p>}
      <table class="grid" data-testid="traces">
        <thead>
          <tr>
            <th>Root</th>
            <th>Services</th>
            <th>Spans</th>
            <th>Duration</th>
            <th>Status</th>
            <th>Started</th>
          </tr>
        </thead>
        <tbody>
          {(value?.traces ?? []).map((t) => (
            <tr key={t.traceId}>
              <td>
                <a href={`#/traces/${t.traceId}`}>{t.rootName}</a>
              </td>
              <td>
                {t.services.map((s) => (
                  <span key={s} class="chip" style={{ borderColor: serviceColour(s) }}>
                    {s}
                  </span>
                ))}
              </td>
              <td class="num">{t.spanCount}</td>
              <td class="num">{formatMs(t.durationMs)}</td>
              <td class={t.errorCount ? "bad" : ""}>
                {t.status}
                {t.errorCount ? ` (${t.errorCount} errors)` : ""}
              </td>
              <td>{t.startTime ? timestampDate(t.startTime).toLocaleTimeString() : ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

function SpanRow({ s, total }: { s: Span; total: number }) {
  const [open, setOpen] = useState(false);
  const left = total > 0 ? (s.offsetMs / total) * 100 : 0;
  const width = total > 0 ? Math.max(0.4, (s.durationMs / total) * 100) : 100;
  const attrs = JSON.parse(s.attributesJson || "{}") as Record<string, unknown>;
  return (
    <>
      <tr
        class={`span ${s.status === "error" ? "bad" : ""}`}
        data-testid="span"
        data-service={s.service}
        onClick={() => setOpen(!open)}
      >
        <td class="name" style={{ paddingLeft: `${0.4 + s.depth * 0.9}rem` }} title={s.name}>
          {s.linked ? "↪ " : ""}
          {s.name}
          <span class="kind">{s.kind}</span>
        </td>
        <td>
          <span class="dot" style={{ background: serviceColour(s.service) }} />
          {s.service}
        </td>
        <td class="bar-cell">
          <span
            class="bar"
            style={{ left: `${left}%`, width: `${width}%`, background: serviceColour(s.service) }}
          />
        </td>
        <td class="num">{formatMs(s.durationMs)}</td>
      </tr>
      {open && (
        <tr class="detail" data-testid="span-detail">
          <td colSpan={4}>
            <p>
              {s.kind} span {s.spanId} · +{formatMs(s.offsetMs)} · status {s.status}
              {s.statusMessage ? `: ${s.statusMessage}` : ""}
            </p>
            <table class="grid">
              <tbody>
                {Object.entries(attrs).map(([k, v]) => (
                  <tr key={k}>
                    <td>
                      <code>{k}</code>
                    </td>
                    <td class="wrap">{typeof v === "string" ? v : JSON.stringify(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {s.events.map((e, i) => (
              <p key={i} class="event">
                event <b>{e.name}</b> at +{formatMs(e.offsetMs)} <code>{e.attributesJson}</code>
              </p>
            ))}
          </td>
        </tr>
      )}
    </>
  );
}

/** One trace as a waterfall, its log lines beside. Polls while spans are still arriving. */
export function TraceDetail({ traceId }: { traceId: string }) {
  const { value, error } = usePolled(() => consoleApi.getTrace({ traceId }), 1500, [traceId]);
  const total = value?.summary?.durationMs ?? 0;
  const services = [...new Set((value?.spans ?? []).map((s) => s.service))];
  // The saga the trace's request started (its steps' spans carry saga.id).
  const sagaId = (value?.spans ?? [])
    .map((s) => (JSON.parse(s.attributesJson || "{}") as Record<string, unknown>)["saga.id"])
    .find((v): v is string => typeof v === "string");
  return (
    <section>
      <h2>
        <a href="#/traces">Traces</a> / <code>{traceId}</code>
      </h2>
      {!value && error && (
        <p class="note">
          {error.startsWith("NotFound") ? "Waiting for the trace's spans to arrive…" : error}
        </p>
      )}
      {value && (
        <>
          <p data-testid="trace-summary">
            {value.summary?.rootName} · {value.spans.length} spans · {formatMs(total)} ·{" "}
            <span data-testid="trace-services">{services.join(", ")}</span>
            {sagaId && (
              <>
                {" · "}
                <a href={`#/sagas/${sagaId}`} data-testid="trace-saga">
                  its saga
                </a>
              </>
            )}
          </p>
          <div class="trace">
            <table class="grid waterfall" data-testid="waterfall">
              <tbody>
                {value.spans.map((s) => (
                  <SpanRow key={s.spanId} s={s} total={total} />
                ))}
              </tbody>
            </table>
            <div class="logs" data-testid="logs">
              <h4>Log lines ({value.logs.length})</h4>
              {value.logs.map((l, i) => (
                <div key={i} class={`log ${l.level}`}>
                  <span class="dot" style={{ background: serviceColour(l.service) }} /> +
                  {formatMs(l.offsetMs)} {l.service} <b>{l.level}</b> {l.msg}
                </div>
              ))}
            </div>
          </div>
        </>
      )}
    </section>
  );
}
