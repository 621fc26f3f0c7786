import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { knownSeriesNames } from "./catalogue.js";
import { loadDashboards, panelQueries } from "./dashboards.js";
import { grafanaDir, repoRoot } from "./paths.js";
import { expandGrafanaVariables, metricNames, syntaxErrors } from "./promql.js";
import { findBinary, promtool } from "./tools.js";

const dashboards = loadDashboards();
const queries = panelQueries(dashboards);

describe("infra/grafana dashboards", () => {
  it("has the four dashboards, each with a unique uid and panels with queries", () => {
    expect(dashboards.map((d) => d.file)).toEqual([
      "event-pipeline.json",
      "gateway.json",
      "mesh-overview.json",
      "sagas-orders.json",
    ]);
    expect(new Set(dashboards.map((d) => d.uid)).size).toBe(dashboards.length);
    for (const d of dashboards) {
      expect(d.title).toMatch(/^Meshwork \/ /);
      expect(queries.filter((q) => q.dashboard === d.file).length, d.file).toBeGreaterThanOrEqual(6);
      const ids = d.json.panels.map((p) => (p as { id?: number }).id);
      expect(new Set(ids).size, `${d.file}: panel ids`).toBe(ids.length);
    }
  });

  it("shows RED per service on the overview: rate, server faults and latency by service", () => {
    const overview = queries.filter((q) => q.dashboard === "mesh-overview.json").map((q) => q.expr);
    for (const series of [
      "service:rpc_server_requests:rate5m",
      "service:rpc_server_errors:ratio_rate5m",
      "service:rpc_server_duration_seconds:p99_rate5m",
    ]) {
      expect(
        overview.some((e) => metricNames(expandGrafanaVariables(e)).includes(series)),
        series,
      ).toBe(true);
    }
  });

  it("queries the provisioned Prometheus datasource by its uid", () => {
    const provisioned = parse(
      readFileSync(join(grafanaDir, "provisioning/datasources/datasources.yaml"), "utf8"),
    ) as {
      datasources: Array<{ uid: string; type: string }>;
    };
    const prometheus = provisioned.datasources.find((d) => d.type === "prometheus");
    for (const d of dashboards) {
      for (const p of d.json.panels) {
        if (p.type === "row") continue;
        expect(p.datasource, `${d.file}: ${p.title}`).toEqual({ type: "prometheus", uid: prometheus?.uid });
        for (const t of p.targets ?? []) expect(t.datasource).toEqual(p.datasource);
      }
    }
  });

  it("is provisioned from the directory docker-compose.yml mounts", () => {
    const provider = parse(
      readFileSync(join(grafanaDir, "provisioning/dashboards/dashboards.yaml"), "utf8"),
    ) as {
      providers: Array<{ type: string; options: { path: string } }>;
    };
    const compose = parse(readFileSync(join(repoRoot, "docker-compose.yml"), "utf8")) as {
      services: Record<string, { volumes?: string[] }>;
    };
    const path = provider.providers[0]?.options.path;
    expect(provider.providers[0]?.type).toBe("file");
    expect(compose.services.grafana?.volumes).toContain(`./infra/grafana/dashboards:${path}:ro`);
  });

  it("names only series the mesh exports or the rules record", () => {
    const known = knownSeriesNames();
    for (const q of queries) {
      const names = metricNames(expandGrafanaVariables(q.expr));
      expect(names.length, `${q.dashboard} / ${q.panel}: no series`).toBeGreaterThan(0);
      for (const n of names) expect(known.has(n), `${q.dashboard} / ${q.panel} selects ${n}`).toBe(true);
    }
  });

  it("has queries that parse in Prometheus's PromQL grammar", () => {
    for (const q of queries) {
      expect(syntaxErrors(expandGrafanaVariables(q.expr)), `${q.dashboard} / ${q.panel}: ${q.expr}`).toEqual(
        [],
      );
    }
  });

  // promtool 2.42 has no expression checker: each query becomes a recording rule, which
  // `promtool check rules` parses with Prometheus's own parser.
  it.skipIf(!findBinary("promtool"))(
    "has queries that Prometheus's parser accepts (promtool check rules)",
    async () => {
      const dir = mkdtempSync(join(tmpdir(), "mw-dash-"));
      try {
        const rules = queries.map((q, i) => ({
          record: `dashboard:query:${i}`,
          expr: expandGrafanaVariables(q.expr),
        }));
        writeFileSync(join(dir, "panels.yml"), stringify({ groups: [{ name: "panels", rules }] }));
        const r = await promtool(["check", "rules", "panels.yml"], dir);
        expect(r.code, r.stdout + r.stderr).toBe(0);
        expect(r.stdout).toContain(`SUCCESS: ${queries.length} rules found`);
        // The same check refuses a broken query.
        writeFileSync(
          join(dir, "broken.yml"),
          stringify({ groups: [{ name: "p", rules: [{ record: "a:b", expr: "sum(rate(x[1m])" }] }] }),
        );
        expect((await promtool(["check", "rules", "broken.yml"], dir)).code).not.toBe(0);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
