import { propagation, ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { IdOnlyTracer, injectIds } from "./id-tracer.js";
import { installTelemetryGlobals } from "./telemetry.js";

const setter = {
  set(carrier: Record<string, string>, key: string, value: string) {
    carrier[key] = value;
  },
};

describe("injectIds", () => {
  it("writes what the installed propagators write for the same id-only span", () => {
    installTelemetryGlobals();
    const incoming: Array<Record<string, string>> = [
      {},
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" },
      {
        traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        baggage: "user=alice,tier=gold;ttl=30",
      },
      { baggage: "only=baggage" },
      { traceparent: "not a traceparent", tracestate: "a=b" },
    ];
    for (const sampler of [
      new AlwaysOnSampler(),
      new AlwaysOffSampler(),
      new ParentBasedSampler({ root: new AlwaysOnSampler() }),
    ]) {
      const tracer = new IdOnlyTracer(sampler);
      for (const headers of incoming) {
        const parent = propagation.extract(ROOT_CONTEXT, headers);
        const span = tracer.startSpan("m", {}, parent);
        const ours: Record<string, string> = {};
        injectIds(span.spanContext(), parent, ours, setter);
        const theirs: Record<string, string> = {};
        propagation.inject(trace.setSpan(parent, span), theirs, setter);
        expect(ours).toEqual(theirs);
        expect(ours.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
        if (headers.baggage) expect(ours.baggage).toBeDefined();
        if (headers.tracestate && headers.traceparent?.startsWith("00-")) {
          expect(ours.tracestate).toBe(headers.tracestate);
        }
      }
    }
  });
});
