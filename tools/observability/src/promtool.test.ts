import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { knownSeriesNames, loadRules } from "./catalogue.js";
import { prometheusDir, repoRoot } from "./paths.js";
import { metricNames } from "./promql.js";
import { findBinary, promtool } from "./tools.js";

// .ci/run installs Debian's prometheus package when promtool is missing; without it, say so.
const hasPromtool = findBinary("promtool") !== undefined;
if (!hasPromtool)
  console.warn("promtool not found: install Debian's prometheus package (apt-get install prometheus)");

describe.skipIf(!hasPromtool)("infra/prometheus, checked by promtool", () => {
  it("both configurations pass `promtool check config` (and with them the rule files)", async () => {
    for (const file of ["prometheus.yml", "prometheus.local.yml"]) {
      const r = await promtool(["check", "config", file], prometheusDir);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).toMatch(/SUCCESS: 2 rule files found/);
    }
  });

  it("the rules pass `promtool check rules`, and the unit tests `promtool test rules`", async () => {
    const rules = loadRules();
    const check = await promtool(
      ["check", "rules", "rules/alerts.yml", "rules/recording.yml"],
      prometheusDir,
    );
    expect(check.code, check.stdout + check.stderr).toBe(0);
    expect(rules.filter((r) => r.alert).length).toBeGreaterThanOrEqual(10);
    const tests = readdirSync(join(prometheusDir, "tests")).filter((f) => f.endsWith(".test.yml"));
    expect(tests.length).toBeGreaterThanOrEqual(2);
    const test = await promtool(["test", "rules", ...tests.map((f) => `tests/${f}`)], prometheusDir);
    expect(test.code, test.stdout + test.stderr).toBe(0);
    expect(test.stdout).toMatch(/SUCCESS/);
  });

  describe("promtool as the judge (it refuses what is wrong)", () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "mw-promtool-"));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("fails a rule that does not parse, and a unit test whose alert does not fire", async () => {
      writeFileSync(
        join(dir, "bad.yml"),
        "groups:\n  - name: g\n    rules:\n      - record: x:y:rate5m\n        expr: sum(rate(x_total[5m])\n",
      );
      expect((await promtool(["check", "rules", "bad.yml"], dir)).code).not.toBe(0);
      const alerts = readFileSync(join(prometheusDir, "rules/alerts.yml"), "utf8");
      writeFileSync(join(dir, "alerts.yml"), alerts);
      writeFileSync(
        join(dir, "t.yml"),
        [
          "rule_files: [alerts.yml]",
          "evaluation_interval: 1m",
          "tests:",
          "  - interval: 1m",
          "    input_series:",
          '      - series: \'up{job="meshwork-services",service="users",instance="users:50051"}\'',
          "        values: '1 1 1 1'",
          "    alert_rule_test:",
          "      - alertname: InstanceDown",
          "        eval_time: 3m",
          "        exp_alerts: [{ exp_labels: { service: users } }]",
          "",
        ].join("\n"),
      );
      expect((await promtool(["test", "rules", "t.yml"], dir)).code).not.toBe(0);
    });
  });
});

describe("infra/prometheus, against the mesh", () => {
  it("rules select only series the mesh exports or the rules record", () => {
    const known = knownSeriesNames();
    for (const r of loadRules()) {
      for (const name of metricNames(r.expr)) {
        expect(known.has(name), `${r.record ?? r.alert} selects ${name}`).toBe(true);
      }
    }
  });

  it("scrapes every service of docker-compose.yml at its /metrics and the gateway's admin, each with its `service` label", () => {
    const compose = parse(readFileSync(join(repoRoot, "docker-compose.yml"), "utf8"), { merge: true }) as {
      services: Record<string, { environment?: Record<string, string> }>;
    };
    const config = parse(readFileSync(join(prometheusDir, "prometheus.yml"), "utf8")) as {
      rule_files: string[];
      scrape_configs: Array<{
        job_name: string;
        metrics_path?: string;
        static_configs: Array<{ targets: string[]; labels?: Record<string, string> }>;
      }>;
    };
    const targets = config.scrape_configs.flatMap((j) =>
      j.static_configs.flatMap((s) =>
        s.targets.map((t) => ({
          job: j.job_name,
          path: j.metrics_path,
          target: t,
          service: s.labels?.service,
        })),
      ),
    );
    for (const name of ["users", "inventory", "payments", "orders", "notifications"]) {
      const port = compose.services[name]?.environment?.PORT;
      expect(targets).toContainEqual({
        job: "meshwork-services",
        path: "/metrics",
        target: `${name}:${port}`,
        service: name,
      });
    }
    expect(targets).toContainEqual({
      job: "meshwork-gateway",
      path: "/stats/prometheus",
      target: `gateway:${compose.services.gateway?.environment?.ADMIN_PORT}`,
      service: "gateway",
    });
    expect(config.rule_files).toEqual(["rules/*.yml"]);

    // The local configuration has the same jobs, and its default targets the same labels.
    const local = parse(readFileSync(join(prometheusDir, "prometheus.local.yml"), "utf8")) as {
      scrape_configs: Array<{ job_name: string; metrics_path: string }>;
    };
    expect(local.scrape_configs.map((j) => [j.job_name, j.metrics_path])).toEqual([
      ["meshwork-services", "/metrics"],
      ["meshwork-gateway", "/stats/prometheus"],
    ]);
    const local_targets = JSON.parse(
      readFileSync(join(prometheusDir, "targets/services/default.json"), "utf8"),
    ) as Array<{ labels: { service: string } }>;
    expect(local_targets.map((t) => t.labels.service)).toEqual([
      "users",
      "inventory",
      "payments",
      "orders",
      "notifications",
    ]);
  });
});
