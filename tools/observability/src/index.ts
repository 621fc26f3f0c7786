export {
  knownSeriesNames,
  loadRules,
  METRIC_FAMILIES,
  type MetricFamily,
  type Rule,
  SCRAPE_SERIES,
  seriesNames,
} from "./catalogue.js";
export {
  type DashboardFile,
  dashboardsDir,
  loadDashboards,
  type PanelQuery,
  panelQueries,
} from "./dashboards.js";
export { grafanaDir, prometheusDir, repoRoot } from "./paths.js";
export { type Sample, type ScrapeTarget, startPrometheus, type TestPrometheus } from "./prometheus.js";
export { expandGrafanaVariables, metricNames, syntaxErrors } from "./promql.js";
export { findBinary, promtool, type RunResult } from "./tools.js";
