import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { prometheusDir } from "./paths.js";

/** A metric family a Meshwork process exports, in Prometheus naming. */
export interface MetricFamily {
  name: string;
  type: "counter" | "gauge" | "histogram";
  /** The `service` label values of the processes that export it. */
  exporters: readonly string[];
  /**
   * When the family first appears, if not from start-up or the first calls (counters and
   * histograms exist only once something was recorded): a failure, a retry, a dead letter.
   */
  appears?: string;
}

const SERVICES = ["users", "inventory", "payments", "orders", "notifications"] as const;
const OUTBOX = ["users", "payments", "orders", "inventory"] as const;
/** The services that read products through libs/cache. */
const CACHED = ["inventory", "orders"] as const;
/**
 * The services with a durable consumer: notifications (users', orders' and payments' events),
 * inventory (legacy's captured products, the strangler's data sync), users (legacy's captured
 * users) and orders (legacy's captured orders).
 */
const CONSUMING = ["notifications", "inventory", "users", "orders"] as const;
/** With the gateway, whose JWKS goes through libs/cache too (cache="jwks"). */
const CACHING = [...CACHED, "gateway"] as const;

/**
 * What the mesh exports, as measured on a running mesh (infra/prometheus/README.md has the
 * labels). The dashboards and rules may name only these and the recorded series; the metrics
 * stack test checks this list against what a real Prometheus scrapes from a real mesh, both
 * ways, so it cannot drift from the code.
 */
export const METRIC_FAMILIES: readonly MetricFamily[] = [
  { name: "target_info", type: "gauge", exporters: [...SERVICES, "gateway"] },
  // What each process runs: its package's version and build commit (observeBuildInfo, libs/runtime).
  { name: "meshwork_build_info", type: "gauge", exporters: [...SERVICES, "gateway"] },
  { name: "rpc_server_requests_total", type: "counter", exporters: SERVICES },
  { name: "rpc_server_duration", type: "histogram", exporters: SERVICES },
  { name: "http_server_active_requests", type: "gauge", exporters: SERVICES },
  // The pool of each service (observeDatabasePool from libs/db, in its server.ts).
  { name: "db_client_connection_count", type: "gauge", exporters: SERVICES },
  { name: "db_client_connection_pending_requests", type: "gauge", exporters: SERVICES },
  { name: "db_client_connection_max", type: "gauge", exporters: SERVICES },
  // Transactions refused after waiting DB_POOL_WAIT_TIMEOUT_MS for a connection (0 until one is).
  { name: "db_client_connection_timeouts_total", type: "counter", exporters: SERVICES },
  // Whether the discovery registry (NATS KV) can be read, from the processes that pass their meter
  // to createDiscovery.
  { name: "discovery_registry_up", type: "gauge", exporters: ["orders", "gateway"] },
  {
    name: "discovery_outlier_ejections_total",
    type: "counter",
    exporters: ["orders"],
    appears: "after an endpoint of inventory or payments was ejected (consecutive failures)",
  },
  { name: "users_registered_total", type: "counter", exporters: ["users"] },
  { name: "outbox_backlog", type: "gauge", exporters: OUTBOX },
  { name: "outbox_oldest_age", type: "gauge", exporters: OUTBOX },
  // Inventory publishes StockChanged for every reservation the mesh's orders make.
  { name: "outbox_published_total", type: "counter", exporters: ["users", "orders", "inventory"] },
  {
    name: "outbox_published_total",
    type: "counter",
    exporters: ["payments"],
    appears: "after the first payment event (a refund)",
  },
  {
    name: "outbox_publish_failures_total",
    type: "counter",
    exporters: OUTBOX,
    appears: "after a failed batch",
  },
  { name: "events_consumer_processed_total", type: "counter", exporters: ["notifications"] },
  {
    name: "events_consumer_processed_total",
    type: "counter",
    exporters: ["inventory"],
    appears: "after the first change captured in the legacy monolith (the strangler's data sync)",
  },
  // Read from the broker at each scrape (observeBacklog in libs/events).
  { name: "events_consumer_pending", type: "gauge", exporters: CONSUMING },
  { name: "events_consumer_ack_pending", type: "gauge", exporters: CONSUMING },
  { name: "events_dlq_depth", type: "gauge", exporters: CONSUMING },
  { name: "events_consumer_lag", type: "histogram", exporters: ["notifications"] },
  {
    name: "events_consumer_lag",
    type: "histogram",
    exporters: ["inventory"],
    appears: "after the first change captured in the legacy monolith (the strangler's data sync)",
  },
  {
    name: "events_consumer_duplicates_total",
    type: "counter",
    exporters: CONSUMING,
    appears: "after a redelivered event found in the inbox",
  },
  {
    name: "events_consumer_failed_total",
    type: "counter",
    exporters: CONSUMING,
    appears: "after a handler failure",
  },
  {
    name: "events_consumer_redelivered_total",
    type: "counter",
    exporters: CONSUMING,
    appears: "after a redelivery",
  },
  {
    name: "events_consumer_dead_lettered_total",
    type: "counter",
    exporters: CONSUMING,
    appears: "after the first dead letter",
  },
  {
    name: "events_consumer_database_outages_total",
    type: "counter",
    exporters: CONSUMING,
    appears: "after the consumer's own database was unreachable",
  },
  {
    name: "events_consumer_paused",
    type: "gauge",
    exporters: CONSUMING,
    appears: "after the consumer's own database was unreachable",
  },
  // The product cache (libs/cache) of inventory and orders: reads per tier and outcome, loads from
  // the source, the tiers' size and whether the shared tier answers.
  // The gateway's JWKS cache reads (and loads) on the first call with a token.
  { name: "cache_requests_total", type: "counter", exporters: CACHING },
  { name: "cache_loads_total", type: "counter", exporters: CACHING },
  { name: "cache_load_duration", type: "histogram", exporters: CACHING },
  { name: "cache_l1_entries", type: "gauge", exporters: CACHING },
  { name: "cache_l1_bytes", type: "gauge", exporters: CACHING },
  { name: "cache_shared_up", type: "gauge", exporters: CACHED },
  {
    name: "cache_shared_up",
    type: "gauge",
    exporters: ["gateway"],
    appears: "when the gateway shares its JWKS cache (CACHE_SHARED nats or redis, the mesh's default)",
  },
  {
    name: "cache_invalidations_total",
    type: "counter",
    exporters: ["gateway"],
    appears: "after a token with an unknown kid made the gateway fetch the JWKS again",
  },
  // Inventory drops a product on each StockChanged (every reservation); orders on ProductUpdated.
  { name: "cache_invalidations_total", type: "counter", exporters: ["inventory"] },
  {
    name: "cache_invalidations_total",
    type: "counter",
    exporters: ["orders"],
    appears: "after a product update (UpdateProduct)",
  },
  { name: "cache_evictions_total", type: "counter", exporters: CACHING, appears: "when L1 is full" },
  {
    name: "cache_stale_refused_total",
    type: "counter",
    exporters: CACHING,
    appears: "after a load older than a newer version was refused",
  },
  {
    name: "cache_shared_outages_total",
    type: "counter",
    exporters: CACHING,
    appears: "after the shared tier (NATS KV or Redis) was unreachable",
  },
  { name: "saga_outcomes_total", type: "counter", exporters: ["orders"] },
  { name: "saga_started_total", type: "counter", exporters: ["orders"] },
  { name: "saga_duration", type: "histogram", exporters: ["orders"] },
  // Business counters of orders (apps/orders/src/app/order-metrics.ts); every test mesh run has
  // confirmed orders and one cancelled for its stock.
  { name: "orders_placed_total", type: "counter", exporters: ["orders"] },
  { name: "orders_confirmed_total", type: "counter", exporters: ["orders"] },
  { name: "orders_cancelled_total", type: "counter", exporters: ["orders"] },
  { name: "orders_revenue_captured_total", type: "counter", exporters: ["orders"] },
  // The client half of RED (the client interceptor of libs/telemetry): orders calls inventory
  // and payments; the gateway counts each attempt upstream with the same instruments.
  { name: "rpc_client_requests_total", type: "counter", exporters: ["orders", "gateway"] },
  { name: "rpc_client_duration", type: "histogram", exporters: ["orders", "gateway"] },
  {
    name: "saga_step_failures_total",
    type: "counter",
    exporters: ["orders"],
    appears: "after a failed step attempt",
  },
  { name: "resilience_breaker_state", type: "gauge", exporters: ["orders"] },
  {
    name: "resilience_retries_total",
    type: "counter",
    exporters: ["orders"],
    appears: "after a retried call",
  },
  {
    name: "resilience_rejections_total",
    type: "counter",
    exporters: ["orders"],
    appears: "after a rejected call",
  },
  { name: "cache_requests_total", type: "counter", exporters: ["orders"] },
  { name: "gateway_requests_total", type: "counter", exporters: ["gateway"] },
  { name: "gateway_upstream_requests_total", type: "counter", exporters: ["gateway"] },
  { name: "gateway_duration", type: "histogram", exporters: ["gateway"] },
  { name: "gateway_upstream_active", type: "gauge", exporters: ["gateway"] },
];

/** The series names of a family: a histogram is `_bucket`, `_sum` and `_count`. */
export function seriesNames(family: Pick<MetricFamily, "name" | "type">): string[] {
  return family.type === "histogram"
    ? [`${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`]
    : [family.name];
}

/** Series every Prometheus has for a target: `up` and the scrape's own. */
export const SCRAPE_SERIES = ["up", "scrape_duration_seconds", "scrape_samples_scraped"] as const;

/** A rule of infra/prometheus/rules/*.yml. */
export interface Rule {
  file: string;
  group: string;
  record?: string;
  alert?: string;
  expr: string;
}

/** Every rule of every rules file. */
export function loadRules(dir = join(prometheusDir, "rules")): Rule[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yml"))
    .sort()
    .flatMap((file) => {
      const doc = parse(readFileSync(join(dir, file), "utf8")) as {
        groups: Array<{ name: string; rules: Array<{ record?: string; alert?: string; expr: string }> }>;
      };
      return doc.groups.flatMap((g) => g.rules.map((r) => ({ file, group: g.name, ...r })));
    });
}

/** Every name a query may select: the exported series, the scrape's own, and the recorded ones. */
export function knownSeriesNames(rules = loadRules()): Set<string> {
  return new Set([
    ...METRIC_FAMILIES.flatMap(seriesNames),
    ...SCRAPE_SERIES,
    "ALERTS",
    ...rules.flatMap((r) => (r.record ? [r.record] : [])),
  ]);
}
