export { binariesFor, findPostgresBinaries, type PostgresBinaries } from "./binaries.js";
export { isLivePostgres, type PostmasterPid, readPostmasterPid } from "./pid-file.js";
export { answers, freePort, portIsFree } from "./ports.js";
export { type LocalPostgres, type LocalPostgresOptions, startLocalPostgres } from "./server.js";
