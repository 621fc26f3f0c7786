/** The gateway's route table and policies, for tools that render the same edge elsewhere (Envoy). */
export { type Policy, policiesOf } from "./auth.js";
export { parseRateLimits, type RateRule } from "./ratelimit.js";
export { buildRoutes, clusterOf, type Route } from "./routes.js";
export { type HttpRoute, httpRoutesOf } from "./strangler/http-rules.js";
export { SIDE_HEADER, SIDE_QUESTION } from "./strangler/side-question.js";
