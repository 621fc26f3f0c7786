export { ALLOWED_LONG_FUNCTIONS } from "./allowed.js";
export type { AllowedLongFunction, FunctionLength } from "./function-lengths.js";
export {
  checkedFiles,
  formatLengths,
  MAX_FUNCTION_LINES,
  measureRepository,
  measureSource,
  overTheBar,
} from "./function-lengths.js";
