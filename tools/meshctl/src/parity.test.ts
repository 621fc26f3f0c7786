import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { meshworkFiles } from "@meshwork/contracts";
import { buildRoutes, policiesOf } from "@meshwork/gateway";
import { beforeAll, describe, expect, it } from "vitest";
import { renderEnvoyConfig } from "./envoy.js";
import { findServices } from "./services.js";

/**
 * The Node gateway and the Envoy config rendered for deployments (README, "Parity between the
 * edges"): what one does, the other does, from the same sources. Each row of the README's table
 * that a test can reach is checked here against the gateway's own defaults and route table;
 * the rows marked as differences are pinned too, so closing one shows up as a failing test.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const gatewayDir = join(root, "apps/gateway/dist");

interface EnvoyRoute {
  name: string;
  match: { path: string };
  route: {
    cluster: string;
    timeout: string;
    max_stream_duration: { grpc_timeout_header_max: string };
    retry_policy?: { retry_on: string; num_retries: number };
  };
  typed_per_filter_config?: Record<string, { token_bucket: { max_tokens: number } }>;
}

describe("parity: the Node gateway and Envoy", () => {
  let gw: {
    jwtIssuer: string;
    jwtAudience: string;
    jwtClockSkewS?: number;
    jwtMaxLifetimeS?: number;
    jwksMaxAgeMs?: number;
    retryMaxAttempts: number;
    defaultTimeoutMs: number;
    maxTimeoutMs: number;
    corsOrigins: string[];
  };
  let outlier: { consecutiveFailures: number; baseEjectionMs: number; maxEjectionMs: number };
  // biome-ignore lint/suspicious/noExplicitAny: the rendered config is walked field by field
  let envoy: any;
  let routes: EnvoyRoute[];
  const services = findServices(root);

  beforeAll(async () => {
    const { loadConfig } = (await import(pathToFileURL(join(gatewayDir, "config.js")).href)) as {
      loadConfig: (env: Record<string, string>) => typeof gw;
    };
    gw = loadConfig({});
    ({ defaultOutlierPolicy: outlier } = (await import(
      pathToFileURL(join(gatewayDir, "upstreams.js")).href
    )) as {
      defaultOutlierPolicy: typeof outlier;
    });
    envoy = renderEnvoyConfig({ files: meshworkFiles, services });
    // The RPC routes (the legacy REST routes of the strangler fig match by regex, and have no Node
    // gateway counterpart in this table).
    routes = (
      envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config
        .virtual_hosts[0].routes as EnvoyRoute[]
    ).filter((r) => (r.match as { path?: string }).path !== undefined);
  });
  const filter = (name: string) =>
    envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters.find(
      (f: { name: string }) => f.name === name,
    ).typed_config;
  const seconds = (s: string) => Number(s.replace(/s$/, ""));

  it("routes the same methods to the same services, with the same deadlines", () => {
    const served = new Set(services.map((s) => s.name));
    const table = buildRoutes(meshworkFiles).filter((r) => served.has(r.cluster));
    const expected = table.flatMap((r) =>
      r.methods.map((m) => ({ path: `${r.prefix}${m}`, cluster: r.cluster })),
    );
    expect(routes.map((r) => ({ path: r.match.path, cluster: r.route.cluster }))).toEqual(expected);
    for (const r of routes) {
      expect(seconds(r.route.timeout) * 1000).toBe(gw.defaultTimeoutMs);
      expect(seconds(r.route.max_stream_duration.grpc_timeout_header_max) * 1000).toBe(gw.maxTimeoutMs);
    }
  });

  it("retries the same methods as often: idempotent ones, on UNAVAILABLE, on another endpoint", () => {
    const retryable = new Set(
      buildRoutes(meshworkFiles).flatMap((r) => [...r.retryable].map((m) => `${r.prefix}${m}`)),
    );
    for (const r of routes) {
      expect(r.route.retry_policy !== undefined, r.match.path).toBe(retryable.has(r.match.path));
      if (r.route.retry_policy) {
        // RETRY_MAX_ATTEMPTS counts the first call; Envoy's num_retries does not.
        expect(r.route.retry_policy.num_retries + 1).toBe(gw.retryMaxAttempts);
        expect(r.route.retry_policy.retry_on.split(",")).toContain("unavailable");
      }
    }
  });

  it("makes the same authentication and authorization decisions per method", () => {
    const jwt = filter("envoy.filters.http.jwt_authn");
    const provider = jwt.providers.users;
    expect(provider.issuer).toBe(gw.jwtIssuer);
    expect(provider.audiences).toEqual([gw.jwtAudience]);
    expect(provider.clock_skew_seconds).toBe(gw.jwtClockSkewS ?? 30);
    expect(seconds(provider.max_lifetime)).toBe(gw.jwtMaxLifetimeS ?? 86_400);
    expect(seconds(provider.remote_jwks.cache_duration) * 1000).toBe(gw.jwksMaxAgeMs ?? 300_000);
    const policies = policiesOf(meshworkFiles.flatMap((f) => f.services));
    const rbac = JSON.stringify(filter("envoy.filters.http.rbac").rules.policies);
    for (const r of routes) {
      const policy = policies.get(r.match.path) ?? { kind: "none" };
      const rule = jwt.rules.find(
        (x: { match: { path: string } }) => x.match.path === r.match.path,
      )?.requires;
      const where = `${r.match.path} (${policy.kind})`;
      switch (policy.kind) {
        case "public":
          expect(rule, where).toEqual({
            requires_any: { requirements: [{ provider_name: "users" }, { allow_missing: {} }] },
          });
          break;
        case "authenticated":
          expect(rule, where).toEqual({ provider_name: "users" });
          break;
        case "role":
          expect(rule, where).toEqual({ provider_name: "users" });
          break;
        case "none":
          // Denied by both: no RBAC policy lets it through.
          expect(rbac.includes(`"${r.match.path}"`), where).toBe(false);
          break;
      }
      if (policy.kind !== "none") expect(rbac.includes(`"${r.match.path}"`), where).toBe(true);
    }
  });

  it("ejects outliers and allows the same origins", () => {
    for (const c of envoy.static_resources.clusters.filter(
      (x: { type: string; outlier_detection?: unknown }) => x.type === "STRICT_DNS" && x.outlier_detection,
    )) {
      expect(c.outlier_detection.consecutive_5xx).toBe(outlier.consecutiveFailures);
      expect(c.outlier_detection.consecutive_gateway_failure).toBe(outlier.consecutiveFailures);
      expect(seconds(c.outlier_detection.base_ejection_time) * 1000).toBe(outlier.baseEjectionMs);
      expect(seconds(c.outlier_detection.max_ejection_time) * 1000).toBe(outlier.maxEjectionMs);
    }
    const cors =
      envoy.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config
        .virtual_hosts[0].typed_per_filter_config["envoy.filters.http.cors"];
    expect(gw.corsOrigins).toEqual([]);
    expect(cors.allow_origin_string_match).toEqual([]);
  });

  it("differs where the README says: Envoy's rate limit is per route, not per client (pinned until a global limiter lands)", () => {
    const limited = renderEnvoyConfig({
      files: meshworkFiles,
      services,
      rateLimits: "meshwork.users.v1.UserService/Login=5/1m:5",
    }) as typeof envoy;
    const login = (
      limited.static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config
        .virtual_hosts[0].routes as EnvoyRoute[]
    ).find((r) => r.match.path?.endsWith("/Login"));
    const local = login?.typed_per_filter_config?.["envoy.filters.http.local_ratelimit"] as {
      token_bucket: { max_tokens: number };
      descriptors?: unknown;
    };
    // One bucket per route and Envoy pod, shared by every client (no per-client descriptors).
    expect(local.token_bucket.max_tokens).toBe(5);
    expect(local.descriptors).toBeUndefined();
  });
});
