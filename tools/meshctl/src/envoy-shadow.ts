/**
 * Shadow traffic in Envoy (strangler fig). Envoy mirrors a request from its router filter, so
 * the copy is the request as the route saw it: on a route whose legacy side has the
 * transcoder switched off, that is the REST/JSON request, which the new gRPC service cannot
 * read. The copy therefore goes through a transcoding hop: the `strangler_shadow` cluster is
 * Envoy's own loopback listener of the same name, whose only filters are the gRPC-JSON
 * transcoder and the router, and whose routes lead the shadowed REST routes (and, once
 * transcoded, their gRPC paths) to the new service. Envoy drops the shadow's answer: the
 * client gets legacy's; comparing the two answers is the Node gateway's job (`meshctl
 * strangler diffs`), Envoy's stats count the shadow's status codes per cluster. A copy of a
 * request the route already sent to the new side arrives transcoded, matches no shadow route
 * and is answered 404 on the hop, never by a service.
 *
 * Shadow is switched per route at run time by the runtime key `strangler.<Method>.shadow`
 * (0 or 100: the percentage mirrored; default 0), as the weights are.
 */

const type = (name: string) => `type.googleapis.com/${name}`;

export const SHADOW_CLUSTER = "strangler_shadow";

/** A REST route the hop transcodes: its path regex, and the new service's cluster and gRPC service. */
export interface ShadowedRoute {
  name: string;
  regex: string;
  verb: string;
  cluster: string;
  /** `meshwork.inventory.v1.InventoryService` */
  service: string;
}

/** The mirror policy of a shadowable route: off until `strangler.<name>.shadow` is set to 100. */
export function shadowMirrorPolicy(name: string) {
  return [
    {
      cluster: SHADOW_CLUSTER,
      runtime_fraction: {
        default_value: { numerator: 0, denominator: "HUNDRED" },
        runtime_key: `strangler.${name}.shadow`,
      },
    },
  ];
}

/** The loopback listener that transcodes mirrored REST requests, and the cluster that reaches it. */
export function renderShadowHop(options: {
  routes: readonly ShadowedRoute[];
  port: number;
  timeout: string;
  transcoder: Record<string, unknown>;
}) {
  const services = [...new Set(options.routes.map((r) => `${r.service}|${r.cluster}`))].sort();
  const listener = {
    name: SHADOW_CLUSTER,
    address: { socket_address: { address: "127.0.0.1", port_value: options.port } },
    filter_chains: [
      {
        filters: [
          {
            name: "envoy.filters.network.http_connection_manager",
            typed_config: {
              "@type": type(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
              ),
              stat_prefix: SHADOW_CLUSTER,
              route_config: {
                name: SHADOW_CLUSTER,
                virtual_hosts: [
                  {
                    name: SHADOW_CLUSTER,
                    // Envoy appends `-shadow` to a mirrored request's authority.
                    domains: ["*"],
                    routes: [
                      ...options.routes.map((r) => ({
                        name: `shadow ${r.name}`,
                        match: {
                          safe_regex: { regex: r.regex },
                          headers: [{ name: ":method", string_match: { exact: r.verb } }],
                        },
                        route: { cluster: r.cluster, timeout: options.timeout },
                      })),
                      // The transcoded request is routed again by its gRPC path.
                      ...services.map((sc) => {
                        const [service, cluster] = sc.split("|");
                        return {
                          match: { prefix: `/${service}/`, grpc: {} },
                          route: { cluster, timeout: options.timeout },
                        };
                      }),
                    ],
                  },
                ],
              },
              http_filters: [
                { name: "envoy.filters.http.grpc_json_transcoder", typed_config: options.transcoder },
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
  const cluster = {
    name: SHADOW_CLUSTER,
    type: "STATIC",
    connect_timeout: "0.25s",
    load_assignment: {
      cluster_name: SHADOW_CLUSTER,
      endpoints: [
        {
          lb_endpoints: [
            { endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: options.port } } } },
          ],
        },
      ],
    },
  };
  return { listener, cluster };
}
