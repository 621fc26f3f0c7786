/**
 * The Node flags `meshctl up` starts each of its processes with.
 *
 * - `--enable-source-maps`: stack traces in the logs point at the TypeScript sources.
 * - `--max-semi-space-size=4` (MB): V8's young generation grows to its limit (16 MB per
 *   semi-space on 64-bit) while a service loads its modules and stays resident afterwards. A local
 *   mesh runs nine Node processes on one machine, so that is what idle memory is made of: the
 *   users service idle after start was 137 MB RSS / 92 MB PSS with the default and 114 / 71 MB
 *   with 4 MB, for the same start-up CPU (measured here: `/proc/<pid>/smaps_rollup` 4 s after
 *   SERVING, three starts each, load average 7-10). A smaller young generation also promotes less
 *   per scavenge (see `libs/runtime/src/heap.ts`). Deployments set their own flags; a
 *   `--max-semi-space-size` in `NODE_OPTIONS` wins over this one.
 */
export function meshNodeArgs(nodeOptions = process.env.NODE_OPTIONS ?? ""): string[] {
  const args = ["--enable-source-maps"];
  if (!/(^|\s)--max-semi-space-size(=|\s|$)/.test(nodeOptions))
    args.push(`--max-semi-space-size=${SEMI_SPACE_MB}`);
  return args;
}

/** The young generation's semi-space size, in MB, for a local mesh's processes. */
export const SEMI_SPACE_MB = 4;
