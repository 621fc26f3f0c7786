import type { InvokeResponse, Method, Schema } from "@meshwork/contracts/meshwork/console/v1/console";
import { useState } from "preact/hooks";
import { consoleApi, describeError, formatMs, usePolled } from "./api.js";
import { useSession } from "./session.js";

function SchemaTable({
  name,
  schemas,
  depth = 0,
}: {
  name: string;
  schemas: Map<string, Schema>;
  depth?: number;
}) {
  const s = schemas.get(name);
  if (!s) return <span class="note">{name}</span>;
  return (
    <table class="grid schema" data-testid={depth === 0 ? "schema" : undefined}>
      <tbody>
        {s.fields.map((f) => (
          <tr key={f.name}>
            <td>
              <code>{f.jsonName}</code>
            </td>
            <td>
              {f.repeated ? "repeated " : ""}
              {f.type}
              {f.comment && (
                <div class="note comment" data-testid="field-comment">
                  {f.comment}
                </div>
              )}
              {f.kind === "message" && depth < 2 && !f.type.startsWith("google.") && (
                <SchemaTable name={f.type} schemas={schemas} depth={depth + 1} />
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function Headers({ title, list }: { title: string; list: readonly { name: string; value: string }[] }) {
  return (
    <details open={list.length < 8}>
      <summary>
        {title} ({list.length})
      </summary>
      <table class="grid">
        <tbody>
          {list.map((h, i) => (
            <tr key={i}>
              <td>
                <code>{h.name}</code>
              </td>
              <td class="wrap">{h.value}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}

/** The order an answer is about (`{"order": {"id": ...}}`), whose saga the page can open. */
function orderIdOf(json: string): string | undefined {
  try {
    const id = (JSON.parse(json) as { order?: { id?: unknown } }).order?.id;
    return typeof id === "string" ? id : undefined;
  } catch {
    return undefined;
  }
}

function Result({ r }: { r: InvokeResponse }) {
  const orderId = r.responseJson ? orderIdOf(r.responseJson) : undefined;
  return (
    <div class="result" data-testid="result">
      <p>
        <span class={`status ${r.code === "ok" ? "ok" : "bad"}`} data-testid="result-code">
          {r.code.toUpperCase()}
        </span>{" "}
        {r.message && <span data-testid="result-message">{r.message}</span>}
        {r.sent ? ` · ${formatMs(r.durationMs)}` : " · not sent: the console refused the request"}
      </p>
      {r.field && (
        <p class="error" data-testid="result-field">
          field: <code>{r.field}</code>
        </p>
      )}
      {r.responseJson && <pre data-testid="response">{r.responseJson}</pre>}
      {r.sent && (
        <>
          <Headers title="Headers" list={r.headers} />
          <Headers title="Trailers" list={r.trailers} />
          <p>
            <a href={`#/traces/${r.traceId}`} data-testid="open-trace">
              Trace {r.traceId}
            </a>
            {orderId && (
              <>
                {" · "}
                <a href={`#/sagas/${orderId}`} data-testid="open-saga">
                  Saga of order {orderId}
                </a>
              </>
            )}
          </p>
        </>
      )}
    </div>
  );
}

/**
 * One method's editor and result. Mounted afresh per method (`key`), so it starts from the
 * method's template: an effect that reset the body after mounting could land after the user (or
 * a test, on a loaded machine) had typed, and send the template instead.
 */
function MethodPanel({ m, schemas }: { m: Method; schemas: Map<string, Schema> }) {
  const session = useSession();
  const [body, setBody] = useState(m.templateJson);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<InvokeResponse>();
  const [streamed, setStreamed] = useState<string[]>([]);
  const [error, setError] = useState<string>();
  const [service = "", name = ""] = m.path.slice(1).split("/");
  const send = async () => {
    setBusy(true);
    setError(undefined);
    setResult(undefined);
    setStreamed([]);
    const req = { service, method: name, requestJson: body, token: session?.token ?? "" };
    try {
      if (m.serverStreaming) {
        for await (const e of consoleApi.invokeStream(req)) {
          if (e.event.case === "messageJson") {
            const text = e.event.value;
            setStreamed((s) => [...s, text]);
          } else if (e.event.case === "end") setResult(e.event.value);
        }
      } else {
        setResult(await consoleApi.invoke(req));
      }
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="method" data-testid="method">
      <h3>
        <code>{m.path}</code>
      </h3>
      {m.comment && (
        <p class="comment" data-testid="method-comment">
          {m.comment}
        </p>
      )}
      <p class="badges">
        <span class="badge" data-testid="access">
          access: {m.access}
        </span>
        <span class="badge" data-testid="idempotency">
          {m.idempotency}
        </span>
        {m.serverStreaming && <span class="badge">server stream</span>}
      </p>
      <div class="method-cols">
        <div>
          <h4>Request {m.inputType}</h4>
          <SchemaTable name={m.inputType} schemas={schemas} />
          <h4>Response {m.outputType}</h4>
          <SchemaTable name={m.outputType} schemas={schemas} />
        </div>
        <div>
          <textarea
            data-testid="editor"
            spellcheck={false}
            rows={14}
            value={body}
            onInput={(e) => setBody(e.currentTarget.value)}
          />
          <p>
            <button type="button" disabled={busy} onClick={() => void send()} data-testid="send">
              {busy ? "Calling…" : "Send through the gateway"}
            </button>{" "}
            <button type="button" onClick={() => setBody(m.templateJson)}>
              Reset to template
            </button>{" "}
            <span class="note">{session ? `as ${session.email}` : "no token: log in above"}</span>
          </p>
          {error && <p class="error">{error}</p>}
          {streamed.length > 0 && (
            <div data-testid="stream">
              <h4>
                Stream ({streamed.length} {streamed.length === 1 ? "message" : "messages"}
                {result ? "" : ", open"})
              </h4>
              {streamed.map((m, i) => (
                <pre key={i}>{m}</pre>
              ))}
            </div>
          )}
          {result && <Result r={result} />}
        </div>
      </div>
    </div>
  );
}

/** Every service and method from the gateway's server reflection, and a call to any of them. */
export function Explorer({ service, method }: { service?: string; method?: string }) {
  const { value, error, reload } = usePolled(() => consoleApi.describeApi({}), undefined, []);
  const schemas = new Map((value?.schemas ?? []).map((s) => [s.fullName, s]));
  const selected = value?.services
    .find((s) => s.fullName === service)
    ?.methods.find((m) => m.name === method);
  return (
    <section class="explorer">
      <h2>API explorer</h2>
      {error && <p class="error">console API: {error}</p>}
      {value?.problem && (
        <p class="error" data-testid="problems">
          {value.problem}{" "}
          <button type="button" onClick={reload}>
            Retry
          </button>
        </p>
      )}
      <div class="cols">
        <nav class="catalogue" data-testid="catalogue">
          {(value?.services ?? []).map((s) => (
            <div key={s.fullName}>
              <h4>{s.fullName}</h4>
              <ul>
                {s.methods.map((m) => (
                  <li key={m.name}>
                    <a
                      href={`#/explorer/${s.fullName}/${m.name}`}
                      class={selected === m ? "active" : ""}
                      data-testid={`method-${s.fullName}/${m.name}`}
                    >
                      {m.name}
                    </a>{" "}
                    <span class="note">{m.access}</span>
                  </li>
                ))}
              </ul>
            </div>
          ))}
        </nav>
        <div>
          {selected ? (
            <MethodPanel key={selected.path} m={selected} schemas={schemas} />
          ) : (
            <p class="note">Pick a method.</p>
          )}
        </div>
      </div>
    </section>
  );
}
