import { existsSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * The Node flags `meshctl up` starts each of its processes with.
 *
 * - `--enable-source-maps` (unbundled entry points only): stack traces in the logs point at the
 *   TypeScript sources. A bundle has no map (see `tools/bundle`): Node 20 would parse it eagerly.
 * - `--max-semi-space-size=4` (MB): V8's young generation grows to its limit (16 MB per
 *   semi-space on 64-bit) while a service loads its modules and stays resident afterwards. A local
 *   mesh runs nine Node processes on one machine, so that is what idle memory is made of: the
 *   users service idle after start was 137 MB RSS / 92 MB PSS with the default and 114 / 71 MB
 *   with 4 MB, for the same start-up CPU (measured here: `/proc/<pid>/smaps_rollup` 4 s after
 *   SERVING, three starts each, load average 7-10). A smaller young generation also promotes less
 *   per scavenge (see `libs/runtime/src/heap.ts`). Deployments set their own flags; a
 *   `--max-semi-space-size` in `NODE_OPTIONS` wins over this one.
 */
export function meshNodeArgs(nodeOptions = process.env.NODE_OPTIONS ?? "", bundled = false): string[] {
  const args = bundled ? [] : ["--enable-source-maps"];
  if (!/(^|\s)--max-semi-space-size(=|\s|$)/.test(nodeOptions))
    args.push(`--max-semi-space-size=${SEMI_SPACE_MB}`);
  return args;
}

/** The young generation's semi-space size, in MB, for a local mesh's processes. */
export const SEMI_SPACE_MB = 4;

/** The file `meshctl up` starts for a service, and whether it is the service's bundle. */
export interface ServiceEntry {
  file: string;
  bundled: boolean;
}

/**
 * What `meshctl up` runs for a service whose built entry point is `main` (relative to `dir`): the
 * bundle `meshwork-bundle` wrote beside it (`dist/main.bundle.js`), which starts in about half
 * the CPU time, when it is there and not older than the entry point (a `tsc` run since would
 * otherwise be ignored); else the entry point. `MESHWORK_BUNDLE=0` always takes the entry point
 * (stack traces through source maps).
 */
export function serviceEntry(dir: string, main: string, env: NodeJS.ProcessEnv = process.env): ServiceEntry {
  const file = join(dir, main);
  const bundle = bundleOf(file);
  if (env.MESHWORK_BUNDLE !== "0" && existsSync(bundle) && existsSync(file)) {
    if (statSync(bundle).mtimeMs >= statSync(file).mtimeMs) return { file: bundle, bundled: true };
  }
  return { file, bundled: false };
}

/** The bundle's path for an entry point: `dist/main.js` -> `dist/main.bundle.js`. */
export function bundleOf(entry: string): string {
  return entry.replace(/\.js$/, ".bundle.js");
}
