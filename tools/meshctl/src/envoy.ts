import { create, type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import {
  buildRoutes,
  clusterOf,
  httpRoutesOf,
  type Policy,
  parseRateLimits,
  policiesOf,
  type RateRule,
  SIDE_HEADER,
  SIDE_QUESTION,
} from "@meshwork/gateway";
import { stringify } from "yaml";
import { renderShadowHop, type ShadowedRoute, shadowMirrorPolicy } from "./envoy-shadow.js";
import type { ServiceManifest } from "./services.js";

/** Where the rendered file lives in the repository. */
export const ENVOY_CONFIG_PATH = "infra/envoy/envoy.yaml";
/** The contracts as a FileDescriptorSet, for Envoy's gRPC-JSON transcoder (rendered beside the config). */
export const ENVOY_DESCRIPTORS_PATH = "infra/envoy/meshwork.pb";
/** Where Envoy finds that file (mounted beside envoy.yaml). */
const DESCRIPTORS_IN_ENVOY = "/etc/envoy/meshwork.pb";

/**
 * Every contract file and its imports, dependencies first, as one FileDescriptorSet: what Envoy's
 * `grpc_json_transcoder` reads its `google.api.http` rules and message shapes from.
 */
export function renderDescriptorSet(files: readonly DescFile[]): Uint8Array {
  const seen = new Set<string>();
  const ordered: DescFile[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.name)) return;
    seen.add(f.name);
    for (const d of f.dependencies) visit(d);
    ordered.push(f);
  };
  for (const f of files) visit(f);
  return toBinary(
    FileDescriptorSetSchema,
    create(FileDescriptorSetSchema, { file: ordered.map((f) => f.proto) }),
  );
}

/** `/api/products/{id}` -> an anchored RE2 regex for the path (variables match one segment). */
function templateRegex(template: string): string {
  return `^${template
    .split("/")
    .map((seg) => (/^\{.*\}$/.test(seg) ? "[^/]+" : seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/")}$`;
}

export interface EnvoyOptions {
  /** The contracts: the same route table the Node gateway builds. */
  files: readonly DescFile[];
  /** The services (host name = service name, as in docker-compose; port from the manifest). */
  services: readonly ServiceManifest[];
  /** Same syntax as the gateway's `RATE_LIMITS`. */
  rateLimits?: string;
  issuer?: string;
  audience?: string;
  defaultTimeoutMs?: number;
  maxTimeoutMs?: number;
  /** Origins browsers may call from (`*` for any), as the gateway's CORS_ORIGINS; default none. */
  corsOrigins?: readonly string[];
  /** Listener port (8080) and admin port (9901). */
  port?: number;
  adminPort?: number;
  /** The admin's address: loopback unless told otherwise, as the Node gateway's. */
  adminAddress?: string;
  /**
   * The Node gateway's ext_authz server (its EXT_AUTHZ_PORT), which authorizes every call and
   * signs the identity assertion the services require; default `gateway:9191` as in compose.
   */
  extAuthz?: { host: string; port: number };
  /**
   * Port of the `admin_proxy` listener (9902): the admin's read-only `/ready` and
   * `/stats/prometheus` on every address, for probes and Prometheus, while the admin itself
   * (which can also drain, quit and change runtime values) stays on loopback.
   */
  adminProxyPort?: number;
  /** Port of the loopback `strangler_shadow` listener that transcodes mirrored requests (9903). */
  shadowPort?: number;
}

/** Where Envoy asks for authorization by default: the compose file's gateway, EXT_AUTHZ_PORT. */
export const DEFAULT_EXT_AUTHZ = { host: "gateway", port: 9191 } as const;

// The assertion too: only ext_authz's answer may set it (a client's, even a valid one it kept, is dropped).
const IDENTITY = ["x-meshwork-identity", "x-meshwork-subject", "x-meshwork-roles", "x-meshwork-email"];

// Set by the transcoder on the REST calls it rewrites; ext_authz exchanges legacy sessions on
// those only, so a client's own is dropped first.
const ORIGINAL_PATH = "x-envoy-original-path";

/** The admin paths the `admin_proxy` listener exposes (exact paths, GET only). */
export const ADMIN_PROXY_PATHS = ["/ready", "/stats/prometheus"] as const;

const EXPOSE = [
  "grpc-status",
  "grpc-message",
  "grpc-status-details-bin",
  "x-request-id",
  "retry-after",
  "x-ratelimit-limit",
  "x-ratelimit-remaining",
  "x-ratelimit-reset",
];
const ALLOW_HEADERS = [
  "content-type",
  "connect-protocol-version",
  "connect-timeout-ms",
  "grpc-timeout",
  "x-grpc-web",
  "x-user-agent",
  "authorization",
  "x-request-id",
];
const JWT = "users";
const EXT_AUTHZ_CLUSTER = "edge_authz";
const type = (name: string) => `type.googleapis.com/${name}`;
const seconds = (ms: number) => `${ms / 1000}s`;

/**
 * What a call the monolith answers skips: the transcoder (it stays REST) and ext_authz (legacy
 * authenticates its own calls and reads no assertion; the Node gateway forwards them untouched,
 * and ext_authz has no route for `/api/` paths, so it would refuse them all). Fresh objects per
 * use: a shared one would be rendered as YAML anchors.
 */
function legacySideFilters(): Record<string, unknown> {
  const disabled = () => ({ "@type": type("envoy.config.route.v3.FilterConfig"), disabled: true });
  return {
    "envoy.filters.http.grpc_json_transcoder": disabled(),
    "envoy.filters.http.ext_authz": disabled(),
  };
}

/** The name of the second ext_authz filter: the side question, before the transcoder. */
const LEGACY_SIDE_FILTER = "meshwork.legacy_side";

/**
 * What enables the side question on the new side of a REST route: `meshwork.legacy_side` is
 * disabled in the filter chain by default, and a per-route config of its own enables it (Envoy
 * treats a filter configured on the route as enabled), with the context extension that tells the
 * ext_authz server which question it is asked. Only a call routed to the mesh pays that Check.
 */
function legacySideQuestion(): Record<string, unknown> {
  return {
    [LEGACY_SIDE_FILTER]: {
      "@type": type("envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"),
      check_settings: { context_extensions: { [SIDE_QUESTION.key]: SIDE_QUESTION.value } },
    },
  };
}

/**
 * The route a call the side question sent back to legacy matches once Envoy matched it again: the
 * REST route's path and verb with `x-meshwork-side: legacy` (set by ext_authz only: a client's is
 * dropped before routing), to the monolith, the header not passed on. The filter chain was built
 * for the route first matched (the new side), so the chain-level `disabled` of
 * `legacySideFilters()` no longer applies: each filter is switched off here by its own per-route
 * config, which it reads when it runs. The transcoder with no services is disabled; ext_authz by
 * `disabled`. jwt_authn has no rule for `/api/` paths and RBAC lets them through, as on the
 * legacy side of the split.
 */
function legacyFallbackRoute(
  rest: { name: string; regex: string; verb: string },
  cluster: string,
  timeout: string,
): Record<string, unknown> {
  return {
    name: `strangler ${rest.name} legacy-side`,
    match: {
      safe_regex: { regex: rest.regex },
      headers: [
        { name: ":method", string_match: { exact: rest.verb } },
        { name: SIDE_HEADER, string_match: { exact: "legacy" } },
      ],
    },
    route: { cluster, timeout },
    request_headers_to_remove: [SIDE_HEADER],
    typed_per_filter_config: {
      "envoy.filters.http.grpc_json_transcoder": {
        "@type": type("envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"),
        proto_descriptor: DESCRIPTORS_IN_ENVOY,
        services: [],
      },
      "envoy.filters.http.ext_authz": {
        "@type": type("envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"),
        disabled: true,
      },
    },
  };
}

/** An ext_authz filter asking the Node gateway's server (fails closed: 503 when it cannot be asked). */
function extAuthzFilter(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    "@type": type("envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"),
    transport_api_version: "V3",
    grpc_service: { envoy_grpc: { cluster_name: EXT_AUTHZ_CLUSTER }, timeout: "1s" },
    failure_mode_allow: false,
    status_on_error: { code: "ServiceUnavailable" },
    ...extra,
  };
}

function jwtRequirement(policy: Policy): Record<string, unknown> | undefined {
  switch (policy.kind) {
    case "public":
      // A token is optional; one that is there must verify (the Node gateway does the same).
      return { requires_any: { requirements: [{ provider_name: JWT }, { allow_missing: {} }] } };
    case "authenticated":
    case "role":
      return { provider_name: JWT };
    case "none":
      return undefined;
  }
}

function bucket(rule: RateRule) {
  // Envoy fills `tokens_per_fill` every `fill_interval`: one token per 1/rate seconds.
  const intervalMs = Math.max(1, Math.round(1000 / rule.perSecond));
  return {
    max_tokens: rule.burst,
    tokens_per_fill: 1,
    fill_interval: seconds(intervalMs),
  };
}

/**
 * Renders the Envoy v3 bootstrap that does what the Node gateway does, from the same route table:
 * a route per method (`/<package>.<Service>/<Method>`) to its service's cluster with the default
 * timeout, the client's `grpc-timeout` capped, and a retry policy on UNAVAILABLE for methods the
 * contract marks idempotent; `jwt_authn` with the users service's remote JWKS and a rule per
 * method from its access policy; `rbac` for role policies (and to deny methods with none);
 * `ext_authz` asking the Node gateway's ext_authz server, which applies the gateway's rules and
 * adds the signed identity assertion the services require; for the legacy REST API, a weighted
 * split per route between the monolith and the transcoded RPC, where a caller the mesh cannot
 * hold yet is sent back to the monolith by a second ext_authz (the side question);
 * `local_ratelimit` per route; `grpc_web`; `cors`; identity headers (the assertion too) stripped
 * from clients. Clusters speak HTTP/2 with gRPC health checks, outlier detection and circuit
 * breakers with a retry budget.
 */
export function renderEnvoyConfig(options: EnvoyOptions): Record<string, unknown> {
  const routes = buildRoutes(options.files);
  const policies = policiesOf(options.files.flatMap((f) => f.services));
  const rules = parseRateLimits(options.rateLimits ?? "");
  const byKey = new Map(rules.map((r) => [r.key, r]));
  const defaultTimeout = options.defaultTimeoutMs ?? 15_000;
  const maxTimeout = options.maxTimeoutMs ?? 60_000;
  const ports = new Map(options.services.map((s) => [s.name, s.port]));

  const envoyRoutes: unknown[] = [];
  const jwtRules: unknown[] = [];
  const openPaths: string[] = [];
  const rolePaths = new Map<string, string[]>();
  for (const route of routes) {
    if (!ports.has(route.cluster)) continue; // a contract no running service serves (yet)
    for (const method of route.methods) {
      const path = `${route.prefix}${method}`;
      const policy = policies.get(path) ?? { kind: "none" };
      const rule = byKey.get(`${route.service}/${method}`) ?? byKey.get(route.service) ?? byKey.get("*");
      const r: Record<string, unknown> = {
        name: path,
        match: { path },
        route: {
          cluster: route.cluster,
          timeout: seconds(defaultTimeout),
          max_stream_duration: { grpc_timeout_header_max: seconds(maxTimeout) },
          ...(route.retryable.has(method)
            ? {
                retry_policy: {
                  retry_on: "unavailable,reset,connect-failure,refused-stream",
                  num_retries: 2,
                  retry_back_off: { base_interval: "0.025s", max_interval: "0.250s" },
                  retry_host_predicate: [
                    {
                      name: "envoy.retry_host_predicates.previous_hosts",
                      typed_config: {
                        "@type": type("envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"),
                      },
                    },
                  ],
                },
              }
            : {}),
        },
      };
      if (rule) {
        r.typed_per_filter_config = {
          "envoy.filters.http.local_ratelimit": {
            "@type": type("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"),
            stat_prefix: "route_rate_limit",
            token_bucket: bucket(rule),
            filter_enabled: {
              runtime_key: "local_rate_limit_enabled",
              default_value: { numerator: 100, denominator: "HUNDRED" },
            },
            filter_enforced: {
              runtime_key: "local_rate_limit_enforced",
              default_value: { numerator: 100, denominator: "HUNDRED" },
            },
            response_headers_to_add: [
              {
                append_action: "OVERWRITE_IF_EXISTS_OR_ADD",
                header: { key: "x-ratelimit-limit", value: String(rule.burst) },
              },
            ],
          },
        };
      }
      envoyRoutes.push(r);
      const requirement = jwtRequirement(policy);
      if (requirement) jwtRules.push({ match: { path }, requires: requirement });
      if (policy.kind === "public" || policy.kind === "authenticated") openPaths.push(path);
      if (policy.kind === "role") rolePaths.set(policy.role, [...(rolePaths.get(policy.role) ?? []), path]);
    }
  }

  // The legacy REST API (strangler fig): each route a weighted split between the monolith (the
  // transcoder off) and the new service (transcoded, then routed by its gRPC path as above). The
  // weights start all on legacy, as the Node gateway's without STRANGLER_ROUTES, and move at run
  // time through Envoy's runtime (`/runtime_modify?strangler.<Method>.new=30&strangler.<Method>.legacy=70`),
  // picked by the `x-meshwork-sticky` header's value when a client (or an outer proxy) sends one.
  const legacy = options.services.find((s) => s.kind === "legacy");
  const restRoutes: unknown[] = [];
  const shadowed: ShadowedRoute[] = [];
  if (legacy) {
    for (const rest of httpRoutesOf(options.files).filter((r) => r.template.startsWith("/api/"))) {
      const newCluster = clusterOf(rest.method.parent.file.proto.package);
      if (!ports.has(newCluster)) continue;
      // Reads only are shadowed (as the Node gateway's `shadowable`): a write must not run twice.
      const shadowable = rest.verb === "GET";
      if (shadowable)
        shadowed.push({
          name: rest.name,
          regex: templateRegex(rest.template),
          verb: rest.verb,
          cluster: newCluster,
          service: rest.method.parent.typeName,
        });
      const regex = templateRegex(rest.template);
      // Before the split: a call its side question sent back to legacy, matched again.
      restRoutes.push(
        legacyFallbackRoute(
          { name: rest.name, regex, verb: rest.verb },
          legacy.name,
          seconds(defaultTimeout),
        ),
      );
      restRoutes.push({
        name: `strangler ${rest.name}`,
        match: {
          safe_regex: { regex },
          headers: [{ name: ":method", string_match: { exact: rest.verb } }],
        },
        route: {
          timeout: seconds(defaultTimeout),
          weighted_clusters: {
            runtime_key_prefix: `strangler.${rest.name}`,
            header_name: "x-meshwork-sticky",
            clusters: [
              { name: legacy.name, weight: 100, typed_per_filter_config: legacySideFilters() },
              { name: newCluster, weight: 0, typed_per_filter_config: legacySideQuestion() },
            ],
          },
          ...(shadowable ? { request_mirror_policies: shadowMirrorPolicy(rest.name) } : {}),
        },
      });
    }
    // Paths of the legacy API no method declares: the monolith's alone.
    restRoutes.push({
      name: "strangler legacy-only",
      match: { prefix: "/api/" },
      route: { cluster: legacy.name, timeout: seconds(defaultTimeout) },
      typed_per_filter_config: legacySideFilters(),
    });
    // The monolith authenticates its own calls: RBAC lets its paths through.
    openPaths.push("/api/");
  }
  envoyRoutes.unshift(...restRoutes);
  const transcodedServices = [
    ...new Set(
      httpRoutesOf(options.files)
        .filter((r) => r.template.startsWith("/api/"))
        .map((r) => r.method.parent.typeName),
    ),
  ].sort();

  const transcoderConfig = {
    "@type": type("envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder"),
    proto_descriptor: DESCRIPTORS_IN_ENVOY,
    services: transcodedServices,
    print_options: { preserve_proto_field_names: true, always_print_primitive_fields: true },
    convert_grpc_status: true,
    request_validation_options: {
      reject_unknown_method: false,
      reject_unknown_query_parameters: true,
    },
  };
  const shadowHop =
    shadowed.length > 0
      ? renderShadowHop({
          routes: shadowed,
          port: options.shadowPort ?? 9903,
          timeout: seconds(defaultTimeout),
          transcoder: transcoderConfig,
        })
      : undefined;

  const pathMatchers = (paths: readonly string[]) =>
    paths.map((p) => ({ url_path: { path: p.endsWith("/") ? { prefix: p } : { exact: p } } }));
  const rbacPolicies: Record<string, unknown> = {};
  if (openPaths.length > 0) {
    // Authentication of these is jwt_authn's job; RBAC only lets them through.
    rbacPolicies["public-or-authenticated"] = {
      permissions: [{ or_rules: { rules: pathMatchers(openPaths) } }],
      principals: [{ any: true }],
    };
  }
  for (const [role, paths] of rolePaths) {
    rbacPolicies[`role-${role}`] = {
      permissions: [{ or_rules: { rules: pathMatchers(paths) } }],
      principals: [
        {
          metadata: {
            filter: "envoy.filters.http.jwt_authn",
            path: [{ key: "jwt_payload" }, { key: "roles" }],
            value: { list_match: { one_of: { string_match: { exact: role } } } },
          },
        },
      ],
    };
  }

  // As the Node gateway: no origin is allowed unless configured (issue 25.9).
  const origins = options.corsOrigins ?? [];
  const hcm = {
    "@type": type("envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"),
    stat_prefix: "edge",
    codec_type: "AUTO",
    generate_request_id: true,
    preserve_external_request_id: true,
    access_log: [
      {
        name: "envoy.access_loggers.stdout",
        typed_config: {
          "@type": type("envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"),
          log_format: {
            json_format: {
              method: "%REQ(:PATH)%",
              status: "%RESPONSE_CODE%",
              grpc_status: "%GRPC_STATUS(NUMBER)%",
              duration_ms: "%DURATION%",
              bytes_in: "%BYTES_RECEIVED%",
              bytes_out: "%BYTES_SENT%",
              request_id: "%REQ(X-REQUEST-ID)%",
              trace_id: "%REQ(TRACEPARENT)%",
              upstream: "%UPSTREAM_HOST%",
            },
          },
        },
      },
    ],
    // Before routing (filters run after it): `x-meshwork-side` picks a route, so a client's own
    // must be gone before the route is matched; only the side question's answer may set it.
    early_header_mutation_extensions: [
      {
        name: "envoy.http.early_header_mutation.header_mutation",
        typed_config: {
          "@type": type("envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"),
          mutations: [{ remove: SIDE_HEADER }],
        },
      },
    ],
    route_config: {
      name: "mesh",
      virtual_hosts: [
        {
          name: "mesh",
          domains: ["*"],
          routes: envoyRoutes,
          typed_per_filter_config: {
            "envoy.filters.http.cors": {
              "@type": type("envoy.extensions.filters.http.cors.v3.CorsPolicy"),
              allow_origin_string_match: origins.includes("*")
                ? [{ safe_regex: { regex: ".*" } }]
                : origins.map((o) => ({ exact: o })),
              allow_methods: "POST, GET",
              allow_headers: ALLOW_HEADERS.join(","),
              expose_headers: EXPOSE.join(","),
              max_age: "7200",
            },
          },
        },
      ],
    },
    http_filters: [
      {
        // Identity headers come from verified tokens only: whatever a client sends is dropped first.
        name: "envoy.filters.http.header_mutation",
        typed_config: {
          "@type": type("envoy.extensions.filters.http.header_mutation.v3.HeaderMutation"),
          mutations: { request_mutations: [...IDENTITY, ORIGINAL_PATH].map((h) => ({ remove: h })) },
        },
      },
      {
        name: "envoy.filters.http.cors",
        typed_config: { "@type": type("envoy.extensions.filters.http.cors.v3.Cors") },
      },
      {
        name: "envoy.filters.http.grpc_web",
        typed_config: { "@type": type("envoy.extensions.filters.http.grpc_web.v3.GrpcWeb") },
      },
      ...(legacy
        ? [
            {
              // The side question (strangler fig), on the new side of a REST route only (enabled
              // per route): a legacy session of a user the mesh cannot hold yet is answered OK with
              // `x-meshwork-side: legacy`, and `clear_route_cache` has the route matched again, to
              // the legacy fallback route, before the transcoder rewrites the call. Any other
              // caller goes on unchanged (the route cache is cleared only when a header is set).
              name: LEGACY_SIDE_FILTER,
              disabled: true,
              // Its own stats (`ext_authz.legacy_side.*`), apart from the Check of every call.
              typed_config: extAuthzFilter({ clear_route_cache: true, stat_prefix: "legacy_side" }),
            },
            {
              // REST/JSON to the RPCs of the contracts' google.api.http rules, as the Node gateway's
              // transcoder: proto field names, every field printed; then the route is matched again
              // by the gRPC path, so the filters below see the RPC.
              name: "envoy.filters.http.grpc_json_transcoder",
              typed_config: transcoderConfig,
            },
          ]
        : []),
      {
        // The Node gateway's rules from its own code (policy, token with iat and lifetime checks,
        // per-subject / per-address rate limits), and the signed identity assertion the services
        // require: Envoy cannot sign one. Fails closed. Before jwt_authn: on a REST call the new
        // side answers, it trades an old client's legacy session for the same user's mesh token
        // (set as `authorization`), which jwt_authn and RBAC then check as any other.
        name: "envoy.filters.http.ext_authz",
        typed_config: extAuthzFilter(),
      },
      {
        name: "envoy.filters.http.jwt_authn",
        typed_config: {
          "@type": type("envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"),
          providers: {
            [JWT]: {
              issuer: options.issuer ?? "meshwork-users",
              audiences: [options.audience ?? "meshwork"],
              remote_jwks: {
                http_uri: {
                  uri: `http://users:${ports.get("users") ?? 50051}/.well-known/jwks.json`,
                  cluster: "users_jwks",
                  timeout: "2s",
                },
                // As the Node gateway's JWKS_MAX_AGE_MS: a key dropped by a rotation leaves within it.
                cache_duration: "300s",
                async_fetch: {},
              },
              // As JWT_MAX_LIFETIME_S and JWT_CLOCK_SKEW_S (Envoy bounds the remaining lifetime,
              // exp - now; it does not read iat).
              max_lifetime: "86400s",
              clock_skew_seconds: 30,
              forward: true,
              payload_in_metadata: "jwt_payload",
              claim_to_headers: [
                { header_name: "x-meshwork-subject", claim_name: "sub" },
                { header_name: "x-meshwork-roles", claim_name: "roles" },
                { header_name: "x-meshwork-email", claim_name: "email" },
              ],
            },
          },
          rules: jwtRules,
        },
      },
      {
        // ALLOW with the paths that have a policy: methods without one (and unknown paths) are denied.
        name: "envoy.filters.http.rbac",
        typed_config: {
          "@type": type("envoy.extensions.filters.http.rbac.v3.RBAC"),
          rules: { action: "ALLOW", policies: rbacPolicies },
        },
      },
      {
        name: "envoy.filters.http.local_ratelimit",
        typed_config: {
          "@type": type("envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"),
          stat_prefix: "edge_rate_limit",
        },
      },
      {
        name: "envoy.filters.http.router",
        typed_config: { "@type": type("envoy.extensions.filters.http.router.v3.Router") },
      },
    ],
  };

  const serviceClusters = options.services
    .filter((s) => s.kind === "service")
    .map((s) => ({
      name: s.name,
      type: "STRICT_DNS",
      connect_timeout: "1s",
      lb_policy: "LEAST_REQUEST",
      typed_extension_protocol_options: {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
          "@type": type("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
          explicit_http_config: { http2_protocol_options: {} },
        },
      },
      load_assignment: {
        cluster_name: s.name,
        endpoints: [
          {
            lb_endpoints: [
              { endpoint: { address: { socket_address: { address: s.name, port_value: s.port } } } },
            ],
          },
        ],
      },
      health_checks: [
        {
          timeout: "1s",
          interval: "5s",
          unhealthy_threshold: 2,
          healthy_threshold: 1,
          grpc_health_check: {},
        },
      ],
      outlier_detection: {
        consecutive_5xx: 5,
        consecutive_gateway_failure: 5,
        interval: "1s",
        base_ejection_time: "1s",
        max_ejection_time: "30s",
        max_ejection_percent: 100,
      },
      circuit_breakers: {
        thresholds: [
          {
            priority: "DEFAULT",
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            retry_budget: { budget_percent: { value: 20 }, min_retry_concurrency: 3 },
          },
        ],
      },
    }));
  const legacyClusters = legacy
    ? [
        {
          name: legacy.name,
          type: "STRICT_DNS",
          connect_timeout: "1s",
          lb_policy: "LEAST_REQUEST",
          load_assignment: {
            cluster_name: legacy.name,
            endpoints: [
              {
                lb_endpoints: [
                  {
                    endpoint: {
                      address: { socket_address: { address: legacy.name, port_value: legacy.port } },
                    },
                  },
                ],
              },
            ],
          },
          health_checks: [
            {
              timeout: "1s",
              interval: "5s",
              unhealthy_threshold: 2,
              healthy_threshold: 1,
              http_health_check: { path: "/healthz" },
            },
          ],
        },
      ]
    : [];
  const users = options.services.find((s) => s.name === "users");
  const jwksCluster = {
    name: "users_jwks",
    type: "STRICT_DNS",
    connect_timeout: "1s",
    load_assignment: {
      cluster_name: "users_jwks",
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: {
                address: { socket_address: { address: "users", port_value: users?.port ?? 50051 } },
              },
            },
          ],
        },
      ],
    },
  };

  const authz = options.extAuthz ?? DEFAULT_EXT_AUTHZ;
  const extAuthzCluster = {
    name: EXT_AUTHZ_CLUSTER,
    type: "STRICT_DNS",
    connect_timeout: "1s",
    typed_extension_protocol_options: {
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
        "@type": type("envoy.extensions.upstreams.http.v3.HttpProtocolOptions"),
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: {
      cluster_name: EXT_AUTHZ_CLUSTER,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: authz.host, port_value: authz.port } } } },
          ],
        },
      ],
    },
  };
  const adminPort = options.adminPort ?? 9901;
  const adminCluster = {
    name: "envoy_admin",
    type: "STATIC",
    connect_timeout: "0.25s",
    load_assignment: {
      cluster_name: "envoy_admin",
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: adminPort } } } },
          ],
        },
      ],
    },
  };
  const adminProxy = {
    name: "admin_proxy",
    address: { socket_address: { address: "0.0.0.0", port_value: options.adminProxyPort ?? 9902 } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": type(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              ),
              stat_prefix: "admin_proxy",
              route_config: {
                name: "admin_proxy",
                virtual_hosts: [
                  {
                    name: "admin_proxy",
                    domains: ["*"],
                    routes: ADMIN_PROXY_PATHS.map((path) => ({
                      match: { path, headers: [{ name: ":method", string_match: { exact: "GET" } }] },
                      route: { cluster: "envoy_admin" },
                    })),
                  },
                ],
              },
              http_filters: [
                {
                  name: "envoy.filters.http.router",
                  typed_config: { "@type": type("envoy.extensions.filters.http.router.v3.Router") },
                },
              ],
            },
          },
        ],
      },
    ],
  };

  return {
    admin: {
      address: {
        socket_address: {
          address: options.adminAddress ?? "127.0.0.1",
          port_value: adminPort,
        },
      },
    },
    static_resources: {
      listeners: [
        {
          name: "edge",
          address: { socket_address: { address: "0.0.0.0", port_value: options.port ?? 8080 } },
          filter_chains: [
            { filters: [{ name: "envoy.filters.network.http_connection_manager", typed_config: hcm }] },
          ],
        },
        adminProxy,
        ...(shadowHop ? [shadowHop.listener] : []),
      ],
      clusters: [
        ...serviceClusters,
        ...legacyClusters,
        ...(shadowHop ? [shadowHop.cluster] : []),
        jwksCluster,
        extAuthzCluster,
        adminCluster,
      ],
    },
  };
}

/** The file as committed: a header saying where it comes from, then the YAML. */
export function renderEnvoyYaml(options: EnvoyOptions): string {
  return `# Generated by \`npm run meshctl -- envoy\` from the contracts in proto/ (the Node gateway's route
# table, access policies and retry rules). Do not edit: change the protos or meshctl and render it
# again; a test fails while this file is stale.
${stringify(renderEnvoyConfig(options), { lineWidth: 0 })}`;
}
