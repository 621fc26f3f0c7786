import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { prometheusDir, repoRoot } from "./paths.js";

/**
 * No otelcol binary installs here, so infra/otel/collector.yaml is checked against the files that
 * use it: what docker-compose.yml sends it, and what Prometheus scrapes from it.
 */
interface Collector {
  receivers: Record<string, { protocols?: Record<string, { endpoint: string }> }>;
  processors: Record<string, unknown>;
  exporters: Record<string, { endpoint: string }>;
  extensions?: Record<string, unknown>;
  service: {
    extensions?: string[];
    pipelines: Record<string, { receivers: string[]; processors?: string[]; exporters: string[] }>;
  };
}

const collector = parse(readFileSync(join(repoRoot, "infra/otel/collector.yaml"), "utf8")) as Collector;
const compose = parse(readFileSync(join(repoRoot, "docker-compose.yml"), "utf8"), { merge: true }) as {
  services: Record<string, { environment?: Record<string, string>; volumes?: string[]; ports?: string[] }>;
};
const port = (endpoint: string) => endpoint.split(":").pop();

describe("infra/otel/collector.yaml", () => {
  it("uses in its pipelines only components it defines", () => {
    for (const [name, p] of Object.entries(collector.service.pipelines)) {
      for (const r of p.receivers) expect(collector.receivers, `${name}: ${r}`).toHaveProperty([r]);
      for (const x of p.processors ?? []) expect(collector.processors, `${name}: ${x}`).toHaveProperty([x]);
      for (const e of p.exporters) expect(collector.exporters, `${name}: ${e}`).toHaveProperty([e]);
    }
    for (const e of collector.service.extensions ?? []) expect(collector.extensions).toHaveProperty([e]);
  });

  it("receives OTLP where the services of docker-compose.yml send it, and sends traces on to Jaeger", () => {
    const http = collector.receivers.otlp?.protocols?.http?.endpoint ?? "";
    for (const [name, s] of Object.entries(compose.services)) {
      const target = s.environment?.OTEL_EXPORTER_OTLP_ENDPOINT;
      if (!target) continue;
      const url = new URL(target);
      expect(url.hostname, name).toBe("otel-collector");
      expect(url.port, name).toBe(port(http));
    }
    expect(collector.service.pipelines.traces).toMatchObject({
      receivers: ["otlp"],
      exporters: ["otlp/jaeger"],
    });
    expect(collector.exporters["otlp/jaeger"]?.endpoint).toBe("jaeger:4317");
    expect(compose.services.jaeger?.environment?.COLLECTOR_OTLP_ENABLED).toBe("true");
    expect(compose.services["otel-collector"]?.volumes).toContain(
      "./infra/otel/collector.yaml:/etc/otelcol/collector.yaml:ro",
    );
  });

  it("exposes OTLP metrics for Prometheus on the port prometheus.yml scrapes", () => {
    expect(collector.service.pipelines.metrics).toMatchObject({
      receivers: ["otlp"],
      exporters: ["prometheus"],
    });
    const endpoint = collector.exporters.prometheus?.endpoint ?? "";
    const prometheus = parse(readFileSync(join(prometheusDir, "prometheus.yml"), "utf8")) as {
      scrape_configs: Array<{
        job_name: string;
        honor_labels?: boolean;
        static_configs: Array<{ targets: string[] }>;
      }>;
    };
    const job = prometheus.scrape_configs.find((j) => j.job_name === "otel-collector");
    expect(job?.static_configs.flatMap((s) => s.targets)).toEqual([`otel-collector:${port(endpoint)}`]);
    // The collector names the sender (job, instance): Prometheus keeps its labels.
    expect(job?.honor_labels).toBe(true);
  });
});
