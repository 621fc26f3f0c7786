export { codeName, Explorer, fieldOfDecodeError, fieldOfViolation, template } from "./explorer.js";
export { type MeshOptions, MeshView, type ProcessControl, type SupervisedProcess } from "./mesh.js";
export {
  breakerStates,
  consumerBacklog,
  outboxBacklog,
  parsePrometheusText,
  type Red,
  redFigures,
  type Sample,
  scrape,
} from "./metrics.js";
export { type ConsoleOptions, type RunningConsole, startConsole } from "./server.js";
export { ReceiverClient, traceMessage } from "./traces.js";
