import { fileURLToPath } from "node:url";

/** The repository root (tools/observability/{src,dist}/ -> ../../../). */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
/** infra/prometheus: configs, rules and rule tests. */
export const prometheusDir = `${repoRoot}infra/prometheus`;
/** infra/grafana: provisioning and dashboards. */
export const grafanaDir = `${repoRoot}infra/grafana`;
