import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ConsoleService } from "@meshwork/contracts/meshwork/console/v1/console";
import { useEffect, useState } from "preact/hooks";

/**
 * The console's own API, served by the same origin as the page, over gRPC-Web: its errors come in
 * trailers of an HTTP 200, so an expected answer such as NOT_FOUND for a trace the receiver has not
 * stored yet (the page polls until it has) is not also an HTTP 404 the browser logs as a failed
 * resource load (which the browser test, rightly, counts as a page error).
 */
export const consoleApi = createClient(
  ConsoleService,
  createGrpcWebTransport({ baseUrl: window.location.origin }),
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

/** Distinct hues (no grey: grey is for databases in the flow map). */
const PALETTE = ["#b58900", "#2f6fde", "#d6338a", "#8a4fd1", "#e0701c", "#0f9aa8", "#1f9d55", "#c0262d"];

/** The mesh's own processes get a colour each; any other name a stable one from its hash. */
const KNOWN: Record<string, number> = {
  gateway: 0,
  users: 1,
  inventory: 2,
  payments: 3,
  orders: 4,
  notifications: 5,
};

/** A stable colour per service name (the same name always gets the same colour). */
export function serviceColour(service: string): string {
  let h = KNOWN[service];
  if (h === undefined) {
    h = 7;
    for (const c of service) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  }
  return PALETTE[h % PALETTE.length] ?? "#5b6573";
}

export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}
