import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { grafanaDir } from "./paths.js";

/** One query of one panel of a provisioned dashboard. */
export interface PanelQuery {
  dashboard: string;
  panel: string;
  refId: string;
  expr: string;
  /** The panel's unit (`percentunit` for a ratio, `s`, `reqps`, ...). */
  unit?: string;
}

/** A dashboard JSON file of infra/grafana/dashboards, as Grafana reads it. */
export interface DashboardFile {
  file: string;
  uid: string;
  title: string;
  json: {
    uid: string;
    title: string;
    panels: Array<{
      type: string;
      title: string;
      datasource?: { type: string; uid: string };
      fieldConfig?: { defaults?: { unit?: string } };
      targets?: Array<{ refId: string; expr: string; datasource?: { type: string; uid: string } }>;
      panels?: unknown[];
    }>;
    templating?: { list: Array<{ name: string; query?: unknown }> };
  };
}

/** The directory Grafana's file provider reads (docker-compose mounts it). */
export const dashboardsDir = join(grafanaDir, "dashboards");

/** Every dashboard file, parsed. */
export function loadDashboards(dir = dashboardsDir): DashboardFile[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => {
      const json = JSON.parse(readFileSync(join(dir, file), "utf8")) as DashboardFile["json"];
      return { file, uid: json.uid, title: json.title, json };
    });
}

/** Every PromQL query of every panel (rows have none). */
export function panelQueries(dashboards: DashboardFile[]): PanelQuery[] {
  return dashboards.flatMap((d) =>
    d.json.panels.flatMap((p) =>
      (p.targets ?? []).map((t) => ({
        dashboard: d.file,
        panel: p.title,
        refId: t.refId,
        expr: t.expr,
        unit: p.fieldConfig?.defaults?.unit,
      })),
    ),
  );
}
