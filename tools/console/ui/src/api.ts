import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ConsoleService } from "@meshwork/contracts/meshwork/console/v1/console";
import { useEffect, useState } from "preact/hooks";

/** The console's own API, served by the same origin as the page. */
export const consoleApi = createClient(
  ConsoleService,
  createConnectTransport({ baseUrl: window.location.origin }),
);

/** A sentence for any failure of a console call (the page never goes blank on one). */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

/**
 * Loads `load()` now and every `everyMs` (when set), keeping the last good value on a failure and
 * saying what failed.
 */
export function usePolled<T>(load: () => Promise<T>, everyMs: number | undefined, deps: unknown[]) {
  const [value, setValue] = useState<T | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = () => {
      load()
        .then((v) => {
          if (!live) return;
          setValue(v);
          setError(undefined);
        })
        .catch((err: unknown) => {
          if (live) setError(describeError(err));
        })
        .finally(() => {
          if (live && everyMs) timer = setTimeout(run, everyMs);
        });
    };
    run();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [...deps, tick]);
  return { value, error, reload: () => setTick((t) => t + 1) };
}

/** A stable colour per service name. */
export function serviceColour(service: string): string {
  let h = 0;
  for (const c of service) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${(h * 7) % 360} 62% 48%)`;
}

export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}
