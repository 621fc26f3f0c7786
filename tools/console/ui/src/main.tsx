import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { Explorer } from "./explorer.js";
import { FlowMap } from "./flow.js";
import { LoginPanel } from "./login.js";
import { Resilience } from "./resilience.js";
import { SagaDetail, Sagas } from "./sagas.js";
import { Services } from "./services.js";
import { TraceDetail, Traces } from "./traces.js";
import "./styles.css";

/**
 * `#/services`, `#/explorer/<service>/<method>`, `#/traces`, `#/traces/<id>`, `#/flow`,
 * `#/resilience`, `#/sagas`, `#/sagas/<id>`.
 */
function useRoute(): string[] {
  const read = () =>
    window.location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  const [route, setRoute] = useState(read());
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

const PAGES = [
  ["services", "Services"],
  ["explorer", "API explorer"],
  ["traces", "Traces"],
  ["flow", "Flow map"],
  ["resilience", "Resilience & events"],
  ["sagas", "Sagas"],
] as const;

function App() {
  const route = useRoute();
  const page = route[0] ?? "services";
  return (
    <div class="shell">
      <header>
        <h1>Meshwork console</h1>
        <nav>
          {PAGES.map(([id, label]) => (
            <a key={id} href={`#/${id}`} class={page === id ? "active" : ""} data-testid={`nav-${id}`}>
              {label}
            </a>
          ))}
        </nav>
        <LoginPanel />
      </header>
      <main>
        {page === "services" && <Services />}
        {page === "explorer" && <Explorer service={route[1]} method={route[2]} />}
        {page === "traces" && (route[1] ? <TraceDetail traceId={route[1]} /> : <Traces />)}
        {page === "flow" && <FlowMap />}
        {page === "resilience" && <Resilience />}
        {page === "sagas" && (route[1] ? <SagaDetail id={route[1]} /> : <Sagas />)}
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
