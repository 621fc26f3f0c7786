/**
 * `@meshwork/runtime/internal`: transport internals shared by Meshwork's own packages (the
 * gateway's upstream connections, discovery's health watches and balanced transports) and their
 * tests. **Not a stable API**: these follow Node's and connect-node's private behaviour (HTTP/2
 * session internals, V8 flags) and change whenever a measurement says so, without notice or a
 * major version. Services use `@meshwork/runtime`.
 *
 * @packageDocumentation
 */
export { GuardedSessionManager } from "./client.js";
export { heapGrowingPercent, setHeapGrowingPercent } from "./heap.js";
export { adoptStreamTable, StreamTable, sessionStreams } from "./stream-table.js";
