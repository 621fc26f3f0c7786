import { Code, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import type { Attributes } from "@opentelemetry/api";
import type { Telemetry } from "./telemetry.js";

type DescMethod = UnaryRequest["method"] | StreamRequest["method"];

/** Where the client RED instruments live: a telemetry's bound instruments (exported with it). */
export type ClientMetricsSource = Pick<Telemetry, "createBoundHistogram" | "createBoundCounter">;

/** `not_found` for Code.NotFound: the name the Connect protocol uses on the wire; `ok` for 0. */
export function codeName(code: Code | 0): string {
  if (code === 0) return "ok";
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
}

/** One method's recorders, in one protocol. */
export interface ClientMethodMetrics {
  /** Counts a finished call with its status code and records how long it took. */
  record(code: number, seconds: number): void;
}

/**
 * The client half of RED per RPC, by the OpenTelemetry names: `rpc.client.requests` (calls by
 * `rpc.system`, `rpc.service`, `rpc.method`, `rpc.code`) and `rpc.client.duration` (seconds,
 * from the call's start to its answer, or to the end of its response stream). One set per
 * telemetry, whatever the number of transports (one per endpoint with discovery) using it.
 */
export class ClientMetrics {
  readonly #requests;
  readonly #duration;
  /** Per method, one entry per protocol: [connect, grpc]. */
  readonly #methods = new Map<
    DescMethod,
    [ClientMethodMetrics | undefined, ClientMethodMetrics | undefined]
  >();
  readonly #named = new Map<string, ClientMethodMetrics>();

  constructor(source: ClientMetricsSource) {
    this.#requests = source.createBoundCounter(
      "rpc.client.requests",
      "RPCs made, by service, method and code",
    );
    this.#duration = source.createBoundHistogram("rpc.client.duration", {
      description:
        "Time from an RPC's start to its answer (or its response stream's end), as its caller saw it",
      unit: "s",
      boundaries: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
  }

  /** One method's recorders, by its descriptor (the interceptor's key: no string built per call). */
  method(service: string, method: DescMethod, grpc: boolean): ClientMethodMetrics {
    let pair = this.#methods.get(method);
    if (!pair) {
      pair = [undefined, undefined];
      this.#methods.set(method, pair);
    }
    const i = grpc ? 1 : 0;
    let m = pair[i];
    if (!m) {
      m = this.named(service, method.name, grpc);
      pair[i] = m;
    }
    return m;
  }

  /**
   * One method's recorders, by its names, for a caller without descriptors (the gateway's
   * proxy, which forwards frames): look it up once per method and keep it, not once per call.
   * Both lookups share one set per method, so no series is bound twice.
   */
  named(service: string, method: string, grpc: boolean): ClientMethodMetrics {
    const key = `${grpc ? "g" : "c"}${service}/${method}`;
    let m = this.#named.get(key);
    if (!m) {
      m = this.#bind({
        "rpc.system": grpc ? "grpc" : "connect_rpc",
        "rpc.service": service,
        "rpc.method": method,
      });
      this.#named.set(key, m);
    }
    return m;
  }

  #bind(base: Attributes): ClientMethodMetrics {
    const byCode = new Map<number, { count: () => void; record: (s: number) => void }>();
    const requests = this.#requests;
    const duration = this.#duration;
    return {
      record(code, seconds) {
        let c = byCode.get(code);
        if (!c) {
          const attrs = { ...base, "rpc.code": codeName(code) };
          c = { count: requests.bind(attrs), record: duration.bind(attrs) };
          byCode.set(code, c);
        }
        c.count();
        c.record(seconds);
      },
    };
  }
}

const bySource = new WeakMap<ClientMetricsSource, ClientMetrics>();

/** The client instruments of `source`, created on first use (never twice: one family per name). */
export function clientMetricsOf(source: ClientMetricsSource): ClientMetrics {
  let m = bySource.get(source);
  if (!m) {
    m = new ClientMetrics(source);
    bySource.set(source, m);
  }
  return m;
}

/** Whether `t` carries bound instruments (a whole Telemetry, whatever its declared type). */
export function hasBoundInstruments(t: object | undefined): t is ClientMetricsSource {
  return (
    t !== undefined &&
    typeof (t as Partial<ClientMetricsSource>).createBoundHistogram === "function" &&
    typeof (t as Partial<ClientMetricsSource>).createBoundCounter === "function"
  );
}
