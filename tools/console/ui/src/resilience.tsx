import { useState } from "preact/hooks";
import { consoleApi, describeError, usePolled } from "./api.js";
import { Problems } from "./services.js";

/** Breakers, ejections, outbox backlog, consumer backlog and dead letters with replay. */
export function Resilience() {
  const { value, error, reload } = usePolled(() => consoleApi.getResilience({}), 2000, []);
  const [note, setNote] = useState<string>();
  const replay = (stream: string, seq: bigint) => {
    consoleApi
      .replayDeadLetter({ stream, seq })
      .then((r) => setNote(`replayed ${stream}#${seq} to ${r.originalSubject}`))
      .catch((err: unknown) => setNote(describeError(err)))
      .finally(reload);
  };
  return (
    <section>
      <h2>Resilience &amp; events</h2>
      {error && <p class="error">console API: {error}</p>}
      {value && <Problems problems={value.problems} />}
      <h3>Circuit breakers</h3>
      <table class="grid" data-testid="breakers">
        <thead>
          <tr>
            <th>Caller</th>
            <th>Upstream</th>
            <th>State</th>
          </tr>
        </thead>
        <tbody>
          {(value?.breakers ?? []).map((b) => (
            <tr
              key={`${b.caller}/${b.upstream}`}
              data-testid={`breaker-${b.caller}-${b.upstream}`}
              data-state={b.state}
            >
              <td>{b.caller}</td>
              <td>{b.upstream}</td>
              <td class={b.state === "closed" ? "ok" : "bad"}>{b.state}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {value && value.ejections.length > 0 && (
        <>
          <h3>Outlier ejections (gateway)</h3>
          <pre>{value.ejections.join("\n")}</pre>
        </>
      )}
      <h3>Outbox backlog</h3>
      <table class="grid" data-testid="outboxes">
        <thead>
          <tr>
            <th>Service</th>
            <th>Unsent</th>
            <th>Oldest</th>
          </tr>
        </thead>
        <tbody>
          {(value?.outboxes ?? []).map((o) => (
            <tr key={o.service}>
              <td>{o.service}</td>
              <td class="num">{String(o.backlog)}</td>
              <td class="num">{o.oldestAgeSeconds.toFixed(1)} s</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Consumers</h3>
      <table class="grid" data-testid="consumers">
        <thead>
          <tr>
            <th>Service</th>
            <th>Consumer</th>
            <th>Pending (lag)</th>
            <th>Unacknowledged</th>
          </tr>
        </thead>
        <tbody>
          {(value?.consumers ?? []).map((c) => (
            <tr key={`${c.service}/${c.consumer}`}>
              <td>{c.service}</td>
              <td>{c.consumer}</td>
              <td class="num">{String(c.pending)}</td>
              <td class="num">{String(c.ackPending)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Dead letters</h3>
      {note && (
        <p class="note" data-testid="replay-note">
          {note}
        </p>
      )}
      <table class="grid" data-testid="dead-letters">
        <thead>
          <tr>
            <th>Stream</th>
            <th>Seq</th>
            <th>Consumer</th>
            <th>Type</th>
            <th>Event id</th>
            <th>Deliveries</th>
            <th>Error</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(value?.deadLetters ?? []).map((d) => (
            <tr key={`${d.stream}#${d.seq}`} data-testid="dead-letter">
              <td>{d.stream}</td>
              <td class="num">{String(d.seq)}</td>
              <td>{d.consumer}</td>
              <td>{d.type}</td>
              <td>{d.eventId}</td>
              <td class="num">{d.deliveries}</td>
              <td class="wrap">{d.error}</td>
              <td>
                <button type="button" onClick={() => replay(d.stream, d.seq)} data-testid="replay">
                  Replay
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {value && value.deadLetters.length === 0 && <p class="note">No dead letters.</p>}
    </section>
  );
}
