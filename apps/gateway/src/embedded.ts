/** The gateway as a library: to run it inside another process (benchmarks, tests of tools). */
export { parseUpstreams } from "@meshwork/discovery";
export { GATEWAY_HEAP_GROWING_PERCENT, GATEWAY_LIMITS, type GatewayConfig, loadConfig } from "./config.js";
export { createGateway, GATEWAY_LOG_BATCH_BYTES, type Gateway, type GatewayOptions } from "./gateway.js";
export { GATEWAY_NODE_OPTIONS, semiSpaceMbOf } from "./node-options.js";
