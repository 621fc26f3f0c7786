// The side question of Envoy's edge (strangler fig): what the rendered Envoy config
// (`meshctl envoy`) and the gateway's ext_authz server agree on, in a module of its own so the
// renderer reads it without loading the server.

/**
 * The question Envoy's second ext_authz filter (`meshwork.legacy_side`, placed before the
 * gRPC-JSON transcoder and enabled only on the new side of the REST routes) asks, as the
 * per-route `context_extensions` entry `meshwork.question: side` (set by the rendered config, out
 * of a client's reach): which side serves this caller? A call must be sent to legacy before the
 * transcoder rewrites it, which the Check after the transcoder is too late for.
 */
export const SIDE_QUESTION = { key: "meshwork.question", value: "side" } as const;

/**
 * The request header the answer to the side question sets (`legacy`) for a caller the mesh cannot
 * serve yet; Envoy then matches the route again (`clear_route_cache`) and a route on this header
 * sends the call to legacy untranscoded. Clients' own are dropped at the edge, before routing.
 */
export const SIDE_HEADER = "x-meshwork-side";
