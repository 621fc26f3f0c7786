import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { meshworkFiles } from "@meshwork/contracts";
import { httpRoutesOf, SIDE_QUESTION } from "@meshwork/gateway";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { ENVOY_CONFIG_PATH, renderEnvoyConfig, renderEnvoyYaml } from "./envoy.js";
import { ENVOY_EXTENSION_PROTOS, EnvoySchema } from "./envoy-schema.js";
import { findServices } from "./services.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

describe("the Envoy config rendered from the route table", () => {
  let schema: EnvoySchema;
  beforeAll(() => {
    schema = EnvoySchema.load(ENVOY_EXTENSION_PROTOS);
  }, 60_000);

  it("is valid against Envoy's v3 Bootstrap schema, with no unknown field anywhere", () => {
    const config = parse(readFileSync(join(root, ENVOY_CONFIG_PATH), "utf8"));
    expect(schema.validate(config)).toEqual([]);
  });

  it("is the committed file (CI fails while it is stale: run `npm run meshctl -- envoy`)", () => {
    const committed = readFileSync(join(root, ENVOY_CONFIG_PATH), "utf8");
    const rendered = renderEnvoyYaml({ files: meshworkFiles, services: findServices(root) });
    expect(committed).toBe(rendered);
  });

  it("catches what Envoy would refuse: unknown fields, also inside typed_config, bad kinds and enums", () => {
    const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as {
      static_resources: {
        clusters: Array<Record<string, unknown>>;
        listeners: Array<Record<string, unknown>>;
      };
    };
    const broken = structuredClone(config);
    (broken.static_resources.clusters[0] as Record<string, unknown>).lb_polcy = "ROUND_ROBIN";
    (broken.static_resources.clusters[0] as Record<string, unknown>).connect_timeout = 5;
    (broken.static_resources.clusters[0] as Record<string, unknown>).type = "DNS_PLEASE";
    const hcm = (
      broken.static_resources.listeners[0] as {
        filter_chains: Array<{ filters: Array<{ typed_config: Record<string, unknown> }> }>;
      }
    ).filter_chains[0]?.filters[0]?.typed_config as Record<string, unknown>;
    hcm.stat_prefx = "edge";
    const problems = schema.validate(broken);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/clusters\[0\]\.lb_polcy: unknown field/),
        expect.stringMatching(/clusters\[0\]\.connect_timeout: a Duration/),
        expect.stringMatching(/clusters\[0\]\.type: "DNS_PLEASE" is not a value/),
        expect.stringMatching(/HttpConnectionManager>\.stat_prefx: unknown field/),
      ]),
    );
    expect(schema.validate({ admin: { address: { "@type": "x" } } })).not.toEqual([]);
  });

  it("carries the contracts' policies: a route and a JWT rule per method, RBAC for roles, retries for idempotent methods", () => {
    const yaml = renderEnvoyYaml({
      files: meshworkFiles,
      services: findServices(root),
      rateLimits: "meshwork.users.v1.UserService/Login=5/1m:5",
    });
    const config = parse(yaml);
    expect(schema.validate(config)).toEqual([]);
    const text = JSON.stringify(config);
    for (const m of ["RegisterUser", "Login", "GetUser", "ListUsers"]) {
      expect(text).toContain(`"path":"/meshwork.users.v1.UserService/${m}"`);
    }
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const routes = hcm.route_config.virtual_hosts[0].routes as Array<{
      name: string;
      route: { retry_policy?: unknown };
      typed_per_filter_config?: unknown;
    }>;
    const byName = new Map(routes.map((r) => [r.name.split("/").pop(), r]));
    expect(byName.get("GetUser")?.route.retry_policy).toBeDefined(); // NO_SIDE_EFFECTS
    expect(byName.get("Login")?.route.retry_policy).toBeUndefined();
    expect(byName.get("Login")?.typed_per_filter_config).toBeDefined();
    const jwt = hcm.http_filters.find(
      (f: { name: string }) => f.name === "envoy.filters.http.jwt_authn",
    ).typed_config;
    const rule = (path: string) =>
      jwt.rules.find((r: { match: { path: string } }) => r.match.path === path)?.requires;
    expect(rule("/meshwork.users.v1.UserService/Login")).toEqual({
      requires_any: { requirements: [{ provider_name: "users" }, { allow_missing: {} }] },
    });
    expect(rule("/meshwork.users.v1.UserService/GetUser")).toEqual({ provider_name: "users" });
    const rbac = hcm.http_filters.find(
      (f: { name: string }) => f.name === "envoy.filters.http.rbac",
    ).typed_config;
    expect(JSON.stringify(rbac.rules.policies["role-admin"])).toContain(
      "/meshwork.users.v1.UserService/ListUsers",
    );
    expect(JSON.stringify(rbac.rules.policies["public-or-authenticated"])).not.toContain("ListUsers");
    expect(config.admin.address.socket_address).toEqual({ address: "127.0.0.1", port_value: 9901 });
  });

  it("asks the Node gateway's ext_authz server about every call (fail closed), where compose runs it, and drops clients' identity headers", () => {
    const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as {
      static_resources: { clusters: Array<{ name: string; load_assignment: unknown }>; listeners: unknown[] };
    };
    const hcm = (
      config.static_resources.listeners[0] as {
        filter_chains: Array<{
          filters: Array<{
            typed_config: { http_filters: Array<{ name: string; typed_config: Record<string, unknown> }> };
          }>;
        }>;
      }
    ).filter_chains[0]?.filters[0]?.typed_config;
    const names = hcm?.http_filters.map((f) => f.name) ?? [];
    // After the client's identity headers are dropped, before the router.
    expect(names.indexOf("envoy.filters.http.ext_authz")).toBeGreaterThan(
      names.indexOf("envoy.filters.http.header_mutation"),
    );
    expect(names.indexOf("envoy.filters.http.ext_authz")).toBeLessThan(
      names.indexOf("envoy.filters.http.router"),
    );
    const extAuthz = hcm?.http_filters.find((f) => f.name === "envoy.filters.http.ext_authz")?.typed_config;
    expect(extAuthz).toMatchObject({
      transport_api_version: "V3",
      failure_mode_allow: false,
      grpc_service: { envoy_grpc: { cluster_name: "edge_authz" } },
    });
    const dropped = JSON.stringify(
      hcm?.http_filters.find((f) => f.name === "envoy.filters.http.header_mutation")?.typed_config,
    );
    expect(dropped).toContain('"remove":"x-meshwork-identity"');
    // The cluster points at the compose file's gateway, on the EXT_AUTHZ_PORT it is given there.
    const compose = parse(readFileSync(join(root, "docker-compose.yml"), "utf8")) as {
      services: Record<string, { environment?: Record<string, string>; depends_on?: unknown }>;
    };
    const port = Number(compose.services.gateway?.environment?.EXT_AUTHZ_PORT);
    expect(port).toBeGreaterThan(0);
    const cluster = config.static_resources.clusters.find((c) => c.name === "edge_authz");
    expect(JSON.stringify(cluster?.load_assignment)).toContain(
      JSON.stringify({ address: "gateway", port_value: port }),
    );
    expect(JSON.stringify(compose.services.envoy?.depends_on)).toContain("gateway");
  });
});

// biome-ignore lint/suspicious/noExplicitAny: the rendered config, read field by field
type Json = any;

describe("the legacy REST API in the Envoy config (strangler fig)", () => {
  it("splits each REST route between the monolith and the transcoded RPC by runtime weights, with the descriptor set committed", async () => {
    const { renderDescriptorSet, ENVOY_DESCRIPTORS_PATH } = await import("./envoy.js");
    const { fromBinary } = await import("@bufbuild/protobuf");
    const { FileDescriptorSetSchema } = await import("@bufbuild/protobuf/wkt");
    const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as Json;
    const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const routes = hcm.route_config.virtual_hosts[0].routes as Array<Json>;
    const list = routes.find((r) => r.name === "strangler ListProducts");
    expect(list.match).toEqual({
      safe_regex: { regex: "^/api/products$" },
      headers: [{ name: ":method", string_match: { exact: "GET" } }],
    });
    expect(list.route.weighted_clusters.runtime_key_prefix).toBe("strangler.ListProducts");
    expect(list.route.weighted_clusters.clusters.map((c: Json) => [c.name, c.weight])).toEqual([
      ["legacy", 100],
      ["inventory", 0],
    ]);
    // The legacy side is not transcoded; the REST routes come before the gRPC ones.
    expect(
      list.route.weighted_clusters.clusters[0].typed_per_filter_config[
        "envoy.filters.http.grpc_json_transcoder"
      ].disabled,
    ).toBe(true);
    expect(routes.findIndex((r) => r.name === "strangler legacy-only")).toBeLessThan(
      routes.findIndex((r) => r.name?.startsWith("/meshwork.")),
    );
    const transcoder = hcm.http_filters.find(
      (f: Json) => f.name === "envoy.filters.http.grpc_json_transcoder",
    );
    expect(transcoder.typed_config.services).toEqual([
      "meshwork.inventory.v1.InventoryService",
      "meshwork.orders.v1.OrderService",
      "meshwork.users.v1.UserService",
    ]);
    expect(transcoder.typed_config.print_options).toEqual({
      preserve_proto_field_names: true,
      always_print_primitive_fields: true,
    });
    // Before authentication: ext_authz, jwt_authn and RBAC see the RPC's path.
    const names = hcm.http_filters.map((f: Json) => f.name);
    expect(names.indexOf("envoy.filters.http.grpc_json_transcoder")).toBeLessThan(
      names.indexOf("envoy.filters.http.jwt_authn"),
    );
    // The legacy-session exchange (review finding 4): ext_authz runs after the transcoder and
    // before jwt_authn and RBAC, so the mesh token it sets as `authorization` is what they check.
    expect(names.indexOf("envoy.filters.http.grpc_json_transcoder")).toBeLessThan(
      names.indexOf("envoy.filters.http.ext_authz"),
    );
    expect(names.indexOf("envoy.filters.http.ext_authz")).toBeLessThan(
      names.indexOf("envoy.filters.http.jwt_authn"),
    );
    expect(names.indexOf("envoy.filters.http.jwt_authn")).toBeLessThan(
      names.indexOf("envoy.filters.http.rbac"),
    );
    // It trusts `x-envoy-original-path` (the transcoder's) only: a client's is dropped first.
    expect(JSON.stringify(hcm.http_filters[0].typed_config)).toContain('"remove":"x-envoy-original-path"');
    // What legacy answers skips ext_authz (legacy authenticates its own calls; ext_authz has no
    // route for /api/ paths), on the split and on the legacy-only paths; the new side does not.
    const legacyOnly = routes.find((r) => r.name === "strangler legacy-only");
    for (const skipping of [list.route.weighted_clusters.clusters[0], legacyOnly])
      expect(skipping.typed_per_filter_config["envoy.filters.http.ext_authz"].disabled).toBe(true);
    // The new side keeps both; it only has the side question enabled (see below).
    expect(Object.keys(list.route.weighted_clusters.clusters[1].typed_per_filter_config)).toEqual([
      "meshwork.legacy_side",
    ]);
    expect(
      config.static_resources.clusters.find((c: Json) => c.name === "legacy").health_checks[0]
        .http_health_check,
    ).toEqual({ path: "/healthz" });
    // The descriptor set holds every transcoded service with its imports (google/api/http.proto among them).
    const committed = readFileSync(join(root, ENVOY_DESCRIPTORS_PATH));
    expect(committed.equals(Buffer.from(renderDescriptorSet(meshworkFiles)))).toBe(true);
    const set = fromBinary(FileDescriptorSetSchema, committed);
    const names2 = set.file.map((f) => f.name);
    expect(names2).toEqual(
      expect.arrayContaining([
        "google/api/http.proto",
        "google/api/annotations.proto",
        "meshwork/inventory/v1/inventory.proto",
      ]),
    );
    expect(names2.indexOf("google/api/http.proto")).toBeLessThan(
      names2.indexOf("meshwork/inventory/v1/inventory.proto"),
    );
  });
});

/** A request as Envoy's route table sees it: path, method and the other headers. */
interface Req {
  path: string;
  method: string;
  headers?: Record<string, string>;
}

/**
 * The first route of `routes` that matches `req`, as Envoy picks it: `path`, `prefix` or
 * `safe_regex` (these RE2 patterns read the same in JavaScript), `grpc`, and exact header matches.
 */
function firstMatch(routes: Json[], req: Req): Json {
  const header = (name: string) =>
    name === ":method" ? req.method : name === ":path" ? req.path : req.headers?.[name];
  return routes.find((r) => {
    const m = r.match;
    const ok =
      (m.path === undefined || m.path === req.path) &&
      (m.prefix === undefined || req.path.startsWith(m.prefix)) &&
      (m.safe_regex === undefined || new RegExp(m.safe_regex.regex).test(req.path)) &&
      (m.grpc === undefined || (header("content-type") ?? "").startsWith("application/grpc"));
    return (
      ok &&
      (m.headers ?? []).every(
        (h: Json) => header(h.name) !== undefined && header(h.name) === h.string_match.exact,
      )
    );
  });
}

/** The request headers left once the HCM's early header mutations ran (before routing). */
function afterEarlyMutations(hcm: Json, headers: Record<string, string>): Record<string, string> {
  const out = { ...headers };
  for (const ext of hcm.early_header_mutation_extensions ?? [])
    for (const m of ext.typed_config.mutations) if (m.remove) delete out[m.remove];
  return out;
}

describe("a legacy session the mesh cannot hold yet, behind Envoy (the side question, issue 19.2)", () => {
  const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as Json;
  const hcm = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
  const routes = hcm.route_config.virtual_hosts[0].routes as Json[];
  const names = hcm.http_filters.map((f: Json) => f.name) as string[];
  // The REST routes the mesh may answer: a weighted split each.
  const split = routes.filter((r) => r.route.weighted_clusters);

  it("is valid against Envoy's schema (the early header mutation and ExtAuthzPerRoute types included)", () => {
    const schema = EnvoySchema.load(ENVOY_EXTENSION_PROTOS);
    expect(schema.validate(config)).toEqual([]);
    const text = JSON.stringify(config);
    for (const t of [
      "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
      "envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
    ])
      expect(text).toContain(`"type.googleapis.com/${t}"`);
    const rest = httpRoutesOf(meshworkFiles).filter((r) => r.template.startsWith("/api/"));
    expect(split.map((r) => r.name)).toEqual(rest.map((r) => `strangler ${r.name}`));
  }, 60_000);

  it("asks a second ext_authz before the transcoder, disabled unless a route enables it, and has the route matched again on its answer", () => {
    const side = hcm.http_filters.find((f: Json) => f.name === "meshwork.legacy_side");
    const main = hcm.http_filters.find((f: Json) => f.name === "envoy.filters.http.ext_authz");
    expect(names.indexOf("envoy.filters.http.header_mutation")).toBeLessThan(
      names.indexOf("meshwork.legacy_side"),
    );
    expect(names.indexOf("meshwork.legacy_side")).toBeLessThan(
      names.indexOf("envoy.filters.http.grpc_json_transcoder"),
    );
    expect(names.indexOf("envoy.filters.http.grpc_json_transcoder")).toBeLessThan(
      names.indexOf("envoy.filters.http.ext_authz"),
    );
    expect(side.disabled).toBe(true);
    expect(side.typed_config).toEqual({
      ...main.typed_config,
      clear_route_cache: true,
      stat_prefix: "legacy_side",
    });
    expect(side.typed_config).toMatchObject({
      "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
      grpc_service: { envoy_grpc: { cluster_name: "edge_authz" } },
      failure_mode_allow: false,
    });
    expect(main.typed_config.clear_route_cache).toBeUndefined();
  });

  it("enables it on the new side of every REST route only, with the question as a context extension", () => {
    for (const r of split) {
      const [legacySide, newSide] = r.route.weighted_clusters.clusters;
      expect(legacySide.name, r.name).toBe("legacy");
      expect(newSide.typed_per_filter_config["meshwork.legacy_side"], r.name).toEqual({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
        check_settings: { context_extensions: { [SIDE_QUESTION.key]: SIDE_QUESTION.value } },
      });
      expect(legacySide.typed_per_filter_config["meshwork.legacy_side"], r.name).toBeUndefined();
    }
    // Nowhere else: not on the legacy-only paths, not on the gRPC routes, not on the virtual host.
    expect(JSON.stringify(config).split('"meshwork.legacy_side"').length - 1).toBe(split.length + 1);
  });

  it("routes a call whose answer set `x-meshwork-side: legacy` to legacy, untranscoded, on every REST route, before the split", () => {
    const firstRpc = routes.findIndex((r) => r.name.startsWith("/meshwork."));
    for (const r of split) {
      const at = routes.indexOf(r);
      const fallback = routes[at - 1];
      expect(fallback.name).toBe(`${r.name} legacy-side`);
      expect(at).toBeLessThan(firstRpc);
      expect(fallback.match).toEqual({
        safe_regex: r.match.safe_regex,
        headers: [...r.match.headers, { name: "x-meshwork-side", string_match: { exact: "legacy" } }],
      });
      expect(fallback.route).toEqual({ cluster: "legacy", timeout: r.route.timeout });
      expect(fallback.request_headers_to_remove).toEqual(["x-meshwork-side"]);
      // Switched off by each filter's own per-route config (read when the filter runs): the chain
      // was built for the split's new side, so the chain-level `FilterConfig.disabled` of the
      // legacy side would come too late after the route is matched again.
      expect(fallback.typed_per_filter_config).toEqual({
        "envoy.filters.http.grpc_json_transcoder": {
          "@type":
            "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
          proto_descriptor: "/etc/envoy/meshwork.pb",
          services: [],
        },
        "envoy.filters.http.ext_authz": {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
          disabled: true,
        },
      });
      expect(fallback.route.request_mirror_policies).toBeUndefined();
    }
    // Matched as Envoy would: the same call goes to the split, and with the header to legacy.
    const call = { path: "/api/users/0b9a4a7e", method: "GET", headers: { authorization: "Bearer x" } };
    expect(firstMatch(routes, call).name).toBe("strangler GetUser");
    const answered = { ...call, headers: { ...call.headers, "x-meshwork-side": "legacy" } };
    expect(firstMatch(routes, answered).name).toBe("strangler GetUser legacy-side");
    expect(firstMatch(routes, { ...answered, path: "/api/products" }).name).toBe(
      "strangler ListProducts legacy-side",
    );
    expect(firstMatch(routes, { ...answered, method: "POST", path: "/api/orders" }).name).toBe(
      "strangler PlaceOrder legacy-side",
    );
  });

  it("drops a client's own `x-meshwork-side` before routing, so no client picks legacy for itself", () => {
    expect(hcm.early_header_mutation_extensions).toEqual([
      {
        name: "envoy.http.early_header_mutation.header_mutation",
        typed_config: {
          "@type":
            "type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
          mutations: [{ remove: "x-meshwork-side" }],
        },
      },
    ]);
    const forged = { "x-meshwork-side": "legacy", authorization: "Bearer x" };
    const headers = afterEarlyMutations(hcm, forged);
    expect(headers).toEqual({ authorization: "Bearer x" });
    expect(firstMatch(routes, { path: "/api/users/0b9a4a7e", method: "GET", headers }).name).toBe(
      "strangler GetUser",
    );
    // Without that (the header_mutation filter runs after the route is picked), it would not be.
    expect(firstMatch(routes, { path: "/api/users/0b9a4a7e", method: "GET", headers: forged }).name).toBe(
      "strangler GetUser legacy-side",
    );
  });
});

describe("shadow traffic in the Envoy config (strangler fig)", () => {
  it("mirrors each shadowable REST read through a loopback transcoding hop, off until its runtime key says 100", () => {
    const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as Json;
    const edge = config.static_resources.listeners[0].filter_chains[0].filters[0].typed_config;
    const routes = edge.route_config.virtual_hosts[0].routes as Array<Json>;
    const list = routes.find((r) => r.name === "strangler ListProducts");
    expect(list.route.request_mirror_policies).toEqual([
      {
        cluster: "strangler_shadow",
        runtime_fraction: {
          default_value: { numerator: 0, denominator: "HUNDRED" },
          runtime_key: "strangler.ListProducts.shadow",
        },
      },
    ]);
    // A write is never mirrored: it would run twice.
    const place = routes.find((r) => r.name === "strangler PlaceOrder");
    expect(place).toBeDefined();
    expect(place.route.request_mirror_policies).toBeUndefined();
    // The orders routes: weighted between legacy and orders, the two reads mirrored, each under
    // its own runtime keys; the user's orders list is matched before nothing else takes its path.
    for (const [name, regex] of [
      ["GetOrder", "^/api/orders/[^/]+$"],
      ["ListOrders", "^/api/users/[^/]+/orders$"],
    ] as const) {
      const read = routes.find((r) => r.name === `strangler ${name}`);
      expect(read.match).toMatchObject({ safe_regex: { regex } });
      expect(read.route.weighted_clusters.runtime_key_prefix).toBe(`strangler.${name}`);
      expect(read.route.weighted_clusters.clusters.map((c: Json) => [c.name, c.weight])).toEqual([
        ["legacy", 100],
        ["orders", 0],
      ]);
      expect(read.route.request_mirror_policies[0].runtime_fraction.runtime_key).toBe(
        `strangler.${name}.shadow`,
      );
    }
    expect(place.route.weighted_clusters.clusters.map((c: Json) => c.name)).toEqual(["legacy", "orders"]);

    // The mirror's cluster is Envoy's own loopback listener, which transcodes then routes to the new side.
    const cluster = config.static_resources.clusters.find((c: Json) => c.name === "strangler_shadow");
    const hopAddress = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address;
    const hop = config.static_resources.listeners.find((l: Json) => l.name === "strangler_shadow");
    expect(hop.address.socket_address).toEqual(hopAddress);
    expect(hopAddress.address).toBe("127.0.0.1");
    const hcm = hop.filter_chains[0].filters[0].typed_config;
    expect(hcm.http_filters.map((f: Json) => f.name)).toEqual([
      "envoy.filters.http.grpc_json_transcoder",
      "envoy.filters.http.router",
    ]);
    // The same transcoder as the edge's (descriptor set, services, print options).
    const edgeTranscoder = edge.http_filters.find(
      (f: Json) => f.name === "envoy.filters.http.grpc_json_transcoder",
    );
    expect(hcm.http_filters[0].typed_config).toEqual(edgeTranscoder.typed_config);
    const hopRoutes = hcm.route_config.virtual_hosts[0].routes as Array<Json>;
    expect(hopRoutes.find((r) => r.name === "shadow ListProducts")).toMatchObject({
      match: { safe_regex: { regex: "^/api/products$" } },
      route: { cluster: "inventory" },
    });
    // Once transcoded, the request is routed again by its gRPC path, to the new service.
    expect(hopRoutes).toContainEqual(
      expect.objectContaining({
        match: { prefix: "/meshwork.inventory.v1.InventoryService/", grpc: {} },
        route: expect.objectContaining({ cluster: "inventory" }),
      }),
    );
    expect(hopRoutes.some((r) => r.route.cluster === "legacy")).toBe(false);
  });
});

describe("Envoy's admin beyond loopback", () => {
  it("exposes only the admin's GET /ready and /stats/prometheus beyond loopback (the admin_proxy listener)", () => {
    const config = renderEnvoyConfig({ files: meshworkFiles, services: findServices(root) }) as {
      admin: { address: { socket_address: { address: string } } };
      static_resources: {
        listeners: Array<{
          name: string;
          address: { socket_address: { address: string; port_value: number } };
          filter_chains: Array<{ filters: Array<{ typed_config: { route_config: unknown } }> }>;
        }>;
        clusters: Array<{ name: string; load_assignment: unknown }>;
      };
    };
    expect(config.admin.address.socket_address.address).toBe("127.0.0.1");
    const proxy = config.static_resources.listeners.find((l) => l.name === "admin_proxy");
    expect(proxy?.address.socket_address).toEqual({ address: "0.0.0.0", port_value: 9902 });
    if (!proxy) throw new Error("no admin_proxy listener");
    const filter = proxy.filter_chains[0]?.filters[0];
    if (!filter) throw new Error("no filter on admin_proxy");
    const routes = (
      filter.typed_config.route_config as {
        virtual_hosts: Array<{
          routes: Array<{
            match: { path?: string; prefix?: string; headers: unknown[] };
            route: { cluster: string };
          }>;
        }>;
      }
    ).virtual_hosts.flatMap((v) => v.routes);
    // Exact paths (no prefix, so /quitquitquit, /drain_listeners or /runtime_modify never match), GET only.
    expect(routes.map((r) => r.match.path)).toEqual(["/ready", "/stats/prometheus"]);
    for (const r of routes) {
      expect(r.match.prefix).toBeUndefined();
      expect(r.match.headers).toEqual([{ name: ":method", string_match: { exact: "GET" } }]);
      expect(r.route.cluster).toBe("envoy_admin");
    }
    const admin = config.static_resources.clusters.find((c) => c.name === "envoy_admin");
    expect(JSON.stringify(admin?.load_assignment)).toContain('"address":"127.0.0.1","port_value":9901');
  });
});
