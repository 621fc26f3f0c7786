/** The gateway as a library: to run it inside another process (benchmarks, tests of tools). */
export { type GatewayConfig, loadConfig, parseUpstreams } from "./config.js";
export { createGateway, type Gateway, type GatewayOptions } from "./gateway.js";
