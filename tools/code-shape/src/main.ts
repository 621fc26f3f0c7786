#!/usr/bin/env node
// Lists every function in apps/*/src and libs/*/src over the bar (or over the line count given as
// the first argument), longest first, and exits 1 when one over the bar is not on the allow-list.
import { ALLOWED_LONG_FUNCTIONS } from "./allowed.js";
import { formatLengths, MAX_FUNCTION_LINES, measureRepository, overTheBar } from "./function-lengths.js";
import { repositoryRoot } from "./paths.js";

const threshold = Number(process.argv[2] ?? MAX_FUNCTION_LINES);
const all = measureRepository(repositoryRoot);
const long = all.filter((fn) => fn.lines > threshold);
console.log(`${long.length} of ${all.length} functions are over ${threshold} lines:`);
if (long.length > 0) console.log(formatLengths(long));
const failing = overTheBar(all, ALLOWED_LONG_FUNCTIONS);
if (failing.length > 0) {
  console.error(
    `\n${failing.length} over ${MAX_FUNCTION_LINES} lines and not allowed:\n${formatLengths(failing)}`,
  );
  process.exitCode = 1;
}
