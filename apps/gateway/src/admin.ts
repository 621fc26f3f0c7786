import http from "node:http";
import type { Telemetry } from "@meshwork/telemetry";
import type { Route } from "./routes.js";
import { stranglerAdmin } from "./strangler/admin.js";
import type { Strangler } from "./strangler/strangler.js";
import type { Upstreams } from "./upstreams.js";

export interface AdminOptions {
  routes: readonly Route[];
  upstreams: Upstreams;
  telemetry: Telemetry;
  /** Whether the gateway takes traffic (false while starting and draining). */
  ready(): boolean;
  config: Record<string, unknown>;
  /** The legacy API's cutover (`/strangler...`), when the gateway serves one. */
  strangler?: Strangler;
}

/**
 * The admin listener, modeled on Envoy's admin: `GET /ready` (200 `LIVE` or 503 `DRAINING`),
 * `/clusters` (each endpoint with its load, failures and ejection state; `?format=json`),
 * `/config_dump` (routes, clusters, policies as JSON) and `/stats/prometheus`.
 */
export function createAdminServer(options: AdminOptions): http.Server {
  return http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://admin");
    if (options.strangler && stranglerAdmin(options.strangler, req, res, url.pathname)) return;
    if (req.method !== "GET") {
      res.writeHead(405, { allow: "GET" }).end();
      return;
    }
    switch (url.pathname) {
      case "/ready": {
        const ok = options.ready();
        res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "LIVE\n" : "DRAINING\n");
        return;
      }
      case "/clusters": {
        const now = Date.now();
        const clusters = [...options.upstreams.clusters].map(([name, endpoints]) => ({
          name,
          endpoints: endpoints.map((e) => ({
            url: e.url,
            health: e.health,
            rq_active: e.active,
            rq_total: e.total,
            failures: e.failures,
            consecutive_failures: e.consecutiveFailures,
            ejected: e.ejectedUntil > now,
            ejected_for_ms: Math.max(0, e.ejectedUntil - now),
            ejections: e.ejections,
          })),
        }));
        if (url.searchParams.get("format") === "json") {
          res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ clusters }));
          return;
        }
        // Envoy's text format: cluster::host::stat::value
        const lines = clusters.flatMap((c) =>
          c.endpoints.flatMap((e) => {
            const host = e.url.replace(/^http:\/\//, "");
            return [
              `${c.name}::${host}::rq_active::${e.rq_active}`,
              `${c.name}::${host}::rq_total::${e.rq_total}`,
              `${c.name}::${host}::rq_error::${e.failures}`,
              `${c.name}::${host}::health_flags::${
                e.health !== "SERVING" ? "/failed_active_hc" : e.ejected ? "/failed_outlier_check" : "healthy"
              }`,
            ];
          }),
        );
        res.writeHead(200, { "content-type": "text/plain" }).end(`${lines.join("\n")}\n`);
        return;
      }
      case "/config_dump":
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify(
            {
              routes: options.routes,
              clusters: Object.fromEntries(
                [...options.upstreams.clusters].map(([k, v]) => [k, v.map((e) => e.url)]),
              ),
              ...options.config,
            },
            null,
            2,
          ),
        );
        return;
      case "/stats/prometheus":
        options.telemetry.metricsHandler(req, res);
        return;
      default:
        res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    }
  });
}
