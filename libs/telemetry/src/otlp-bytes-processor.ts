import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { type Context, context, diag, TraceFlags } from "@opentelemetry/api";
import { type InstrumentationScope, suppressTracing } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, Span, SpanProcessor } from "@opentelemetry/sdk-trace-base";
import { LeanSpan } from "./lean-span.js";
import type { OtelEnv } from "./otel-env.js";
import { OtlpWriter, writeLeanSpan, writeResource, writeScope, writeSpan } from "./otlp-writer.js";

/** The batching of the OpenTelemetry `BatchSpanProcessor` (its `OTEL_BSP_*` variables). */
export interface BatchLimits {
  maxQueueSize: number;
  maxExportBatchSize: number;
  scheduledDelayMillis: number;
  exportTimeoutMillis: number;
}

export interface OtlpBytesExporterOptions extends BatchLimits {
  /** The traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. */
  url: string;
  /** Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`). */
  headers: Record<string, string>;
  /** One request's timeout (`OTEL_EXPORTER_OTLP_TIMEOUT`). */
  timeoutMillis: number;
}

/** Spans of one resource and scope in a batch: their `Span` messages, encoded. */
interface Group {
  resource: Resource;
  scope: InstrumentationScope;
  writer: OtlpWriter;
}

const MIN_CAPACITY = 16 * 1024;
const MAX_CAPACITY = 4 * 1024 * 1024;

/** Spans ended since the last cut, encoded by resource and scope. */
class Batch {
  readonly groups = new Map<InstrumentationScope, Group>();
  count = 0;

  /**
   * `capacity`: the bytes each scope's writer starts with, from the batch before (so a steady
   * stream of spans never regrows one); a scope not in it starts at 16 KiB.
   */
  constructor(readonly capacity: ReadonlyMap<InstrumentationScope, number> = new Map()) {}

  /** Each scope's bytes in this batch, a tenth more (at most 4 MiB): the next batch's capacities. */
  sizes(): Map<InstrumentationScope, number> {
    const sizes = new Map<InstrumentationScope, number>();
    for (const g of this.groups.values()) {
      sizes.set(g.scope, Math.min(Math.max(MIN_CAPACITY, Math.ceil(g.writer.pos * 1.1)), MAX_CAPACITY));
    }
    return sizes;
  }

  add(span: ReadableSpan): void {
    let group = this.groups.get(span.instrumentationScope);
    if (group === undefined || group.resource !== span.resource) {
      group = this.#groupOf(span);
    }
    if (span instanceof LeanSpan) writeLeanSpan(group.writer, span);
    else writeSpan(group.writer, span);
    this.count++;
  }

  #groupOf(span: ReadableSpan): Group {
    for (const g of this.groups.values()) {
      if (g.scope === span.instrumentationScope && g.resource === span.resource) return g;
    }
    const group = {
      resource: span.resource,
      scope: span.instrumentationScope,
      writer: new OtlpWriter(this.capacity.get(span.instrumentationScope) ?? MIN_CAPACITY),
    };
    // Keyed by scope: a second resource with the same scope object (rare) is found by the scan.
    if (!this.groups.has(span.instrumentationScope)) this.groups.set(span.instrumentationScope, group);
    else this.groups.set({ ...span.instrumentationScope }, group);
    return group;
  }

  /** One ExportTraceServiceRequest: each resource and scope once, then their spans' bytes. */
  request(): Buffer {
    const byResource = new Map<Resource, Group[]>();
    let size = 256;
    for (const g of this.groups.values()) {
      const list = byResource.get(g.resource) ?? [];
      list.push(g);
      byResource.set(g.resource, list);
      size += g.writer.pos + 64;
    }
    const w = new OtlpWriter(size);
    for (const [resource, groups] of byResource) {
      const rs = w.begin(1, 3);
      const { schemaUrl } = writeResource(w, resource);
      for (const g of groups) {
        const ss = w.begin(2, 3);
        writeScope(w, g.scope);
        w.ensure(g.writer.pos);
        g.writer.buf.copy(w.buf, w.pos, 0, g.writer.pos);
        w.pos += g.writer.pos;
        if (g.scope.schemaUrl) w.string(3, g.scope.schemaUrl);
        w.end(ss);
      }
      if (schemaUrl) w.string(3, schemaUrl);
      w.end(rs);
    }
    return w.bytes();
  }
}

const RETRYABLE = new Set([429, 502, 503, 504]);
const MAX_ATTEMPTS = 5;

/**
 * The OTLP/HTTP protobuf trace export of `OTEL_TRACES_EXPORTER=otlp` with less work per span than
 * the SDK's `BatchSpanProcessor` + `OTLPTraceExporter`: each sampled span is encoded to its OTLP
 * `Span` bytes when it ends (nothing of it is kept), and a batch is exported as one standard
 * `ExportTraceServiceRequest` (resource and scope once, then the spans' bytes) by one HTTP POST
 * on a kept-alive connection. It batches as the SDK does (`OTEL_BSP_MAX_QUEUE_SIZE`,
 * `_MAX_EXPORT_BATCH_SIZE`, `_SCHEDULE_DELAY`, `_EXPORT_TIMEOUT`: spans beyond the queue are
 * dropped), sends `OTEL_EXPORTER_OTLP_HEADERS` and retries 429/502/503/504 and network errors with
 * backoff (five attempts), as the SDK's exporter does. `spanProcessorsFor` uses the SDK's
 * exporter instead whenever an option this one does not implement is set (compression,
 * certificates, another protocol).
 */
export class OtlpBytesSpanProcessor implements SpanProcessor {
  readonly #options: OtlpBytesExporterOptions;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;
  #batch = new Batch();
  /** Cut batches waiting for export, oldest first. */
  readonly #ready: Batch[] = [];
  #queued = 0;
  #exporting: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #shutdown: Promise<void> | undefined;
  /** Spans dropped because the queue was full (as the SDK's processor counts them). */
  dropped = 0;

  constructor(options: OtlpBytesExporterOptions) {
    this.#options = options;
    const https = options.url.startsWith("https:");
    this.#agent = https ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#request = https ? httpsRequest : httpRequest;
  }

  onStart(_span: Span, _parentContext: Context): void {}

  onEnd(span: ReadableSpan): void {
    if (this.#shutdown !== undefined) return;
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (this.#queued >= this.#options.maxQueueSize) {
      if (this.dropped++ === 0) diag.warn("OtlpBytesSpanProcessor: the queue is full, spans are dropped");
      return;
    }
    this.#batch.add(span);
    this.#queued++;
    if (this.#batch.count >= this.#options.maxExportBatchSize) {
      this.#cut();
      void this.#pump();
    } else if (this.#timer === undefined) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#cut();
        void this.#pump();
      }, this.#options.scheduledDelayMillis);
      this.#timer.unref();
    }
  }

  /** Ends the current batch: it waits in line for export. */
  #cut(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#batch.count === 0) return;
    this.#ready.push(this.#batch);
    this.#batch = new Batch(this.#batch.sizes());
  }

  /** Exports the waiting batches one at a time; resolves when none waits. */
  #pump(): Promise<void> {
    this.#exporting ??= context.with(suppressTracing(context.active()), async () => {
      try {
        for (let batch = this.#ready.shift(); batch; batch = this.#ready.shift()) {
          try {
            await this.#export(batch.request());
          } catch (err) {
            diag.error(
              `OtlpBytesSpanProcessor: ${batch.count} spans not exported: ${(err as Error).message}`,
            );
          } finally {
            this.#queued -= batch.count;
          }
        }
      } finally {
        this.#exporting = undefined;
      }
    });
    return this.#exporting;
  }

  /** POSTs one request, retrying what the OTLP specification says is retryable. */
  async #export(body: Buffer): Promise<void> {
    const deadline = Date.now() + this.#options.exportTimeoutMillis;
    let delay = 1000;
    for (let attempt = 1; ; attempt++) {
      const left = deadline - Date.now();
      const result = await this.#post(body, Math.min(this.#options.timeoutMillis, Math.max(left, 1)));
      if (result.status !== undefined && result.status >= 200 && result.status < 300) return;
      const retryable = result.status === undefined || RETRYABLE.has(result.status);
      const wait = result.retryAfterMs ?? Math.random() * delay;
      if (!retryable || attempt >= MAX_ATTEMPTS || Date.now() + wait >= deadline) {
        throw new Error(result.status === undefined ? result.error : `HTTP ${result.status}`);
      }
      await new Promise((resolve) => setTimeout(resolve, wait).unref());
      delay = Math.min(delay * 1.5, 5000);
    }
  }

  #post(
    body: Buffer,
    timeoutMs: number,
  ): Promise<{ status?: number; retryAfterMs?: number; error?: string }> {
    return new Promise((resolve) => {
      const req = this.#request(this.#options.url, {
        method: "POST",
        agent: this.#agent,
        timeout: timeoutMs,
        headers: {
          ...this.#options.headers,
          "Content-Type": "application/x-protobuf",
          "Content-Length": body.length,
        },
      });
      req.on("response", (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode, retryAfterMs: retryAfter(res.headers["retry-after"]) }),
        );
        res.on("error", (err) => resolve({ error: err.message }));
      });
      req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on("error", (err) => resolve({ error: err.message }));
      req.end(body);
    });
  }

  forceFlush(): Promise<void> {
    this.#cut();
    return this.#pump();
  }

  shutdown(): Promise<void> {
    this.#shutdown ??= this.forceFlush().finally(() => this.#agent.destroy());
    return this.#shutdown;
  }
}

/** `Retry-After` in ms (seconds or an HTTP date), or undefined. */
function retryAfter(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function positive(env: OtelEnv, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** The `BatchSpanProcessor`'s limits from `OTEL_BSP_*` (its defaults otherwise). */
export function batchLimitsFromEnv(env: OtelEnv): BatchLimits {
  const maxQueueSize = positive(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048);
  return {
    maxQueueSize,
    // As the SDK: a batch larger than the queue is cut to the queue's size.
    maxExportBatchSize: Math.min(positive(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512), maxQueueSize),
    scheduledDelayMillis: positive(env, "OTEL_BSP_SCHEDULE_DELAY", 5000),
    exportTimeoutMillis: positive(env, "OTEL_BSP_EXPORT_TIMEOUT", 30000),
  };
}

/**
 * `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (`key=value,...`, values
 * percent-encoded; the signal's own wins), as the SDK's exporter reads them.
 */
export function otlpHeadersFromEnv(env: OtelEnv): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"]) {
    for (const pair of (env[name] ?? "").split(",")) {
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      try {
        headers[decodeURIComponent(pair.slice(0, eq).trim())] = decodeURIComponent(pair.slice(eq + 1).trim());
      } catch {
        // not percent-decodable: skipped, as the SDK does
      }
    }
  }
  return headers;
}

/** Variables of the SDK's OTLP exporter this processor does not implement: any set means the SDK's. */
const SDK_ONLY = ["COMPRESSION", "CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"].flatMap((v) => [
  `OTEL_EXPORTER_OTLP_${v}`,
  `OTEL_EXPORTER_OTLP_TRACES_${v}`,
]);

/**
 * Whether {@link OtlpBytesSpanProcessor} can export to `url` with `env`'s settings: an http(s)
 * URL, and no compression or TLS client settings (the SDK's exporter handles those).
 */
export function otlpBytesApplies(env: OtelEnv, url: string): boolean {
  if (!/^https?:\/\//.test(url)) return false;
  return SDK_ONLY.every((name) => {
    const v = env[name]?.trim();
    return v === undefined || v === "" || (name.endsWith("COMPRESSION") && v === "none");
  });
}

/** `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`, else 10 s. */
export function otlpTimeoutFromEnv(env: OtelEnv): number {
  return positive(
    env,
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    positive(env, "OTEL_EXPORTER_OTLP_TIMEOUT", 10000),
  );
}
