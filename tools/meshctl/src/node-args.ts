import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

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
 *   `--max-semi-space-size` in `NODE_OPTIONS` wins over this one, and so does a service's own
 *   (its package.json's `meshwork.nodeOptions`, see {@link serviceNodeOptions}: the gateway's 16).
 * - `--cpu-prof --cpu-prof-dir=DIR` when `MESHWORK_CPU_PROFILE_DIR=DIR` is set: a V8 CPU profile
 *   of every process, written when it exits (Node refuses `--cpu-prof` in `NODE_OPTIONS`), to
 *   see where a process's start-up goes.
 */
export function meshNodeArgs(
  nodeOptions = process.env.NODE_OPTIONS ?? "",
  bundled = false,
  profileDir = process.env.MESHWORK_CPU_PROFILE_DIR,
): string[] {
  const args = bundled ? [] : ["--enable-source-maps"];
  // V8 takes its flags with `-` or `_` between words (`--max_semi_space_size` too).
  if (!/(^|\s)--max[-_]semi[-_]space[-_]size(=|\s|$)/.test(nodeOptions))
    args.push(`--max-semi-space-size=${SEMI_SPACE_MB}`);
  if (profileDir) args.push("--cpu-prof", `--cpu-prof-dir=${profileDir}`);
  return args;
}

/**
 * The `NODE_OPTIONS` a process of a service is started with: the service's own options (its
 * package.json's `meshwork.nodeOptions`) first, then the environment's, which win where both set
 * a flag (V8 takes the last). What the image's CMD does (Dockerfile).
 */
export function serviceNodeOptions(
  serviceOptions: string | undefined,
  envOptions = process.env.NODE_OPTIONS,
): string {
  return [serviceOptions, envOptions].filter((o) => o?.trim()).join(" ");
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
 * the CPU time, while the bundle and its chunks are as that build wrote them and every file of
 * the repository's own it was built from still has the content it recorded
 * (`dist/main.bundle.js.inputs.json`, see `tools/bundle`); else the entry point (a
 * `tsc` run since, of the service or of a lib, would otherwise be ignored). Not file times: a
 * build restored from turbo's cache writes the entry point after its bundle as often as not.
 * Hashing the seven services' own files cost ~80 ms of CPU, and their bundles and chunks (30 MB)
 * ~105 ms more (medians of 15 alternated rounds, load 12.5); read asynchronously, so `up` checks every
 * service while NATS and Postgres start (one after the other in `launch`, the seven checks held
 * back the last service's start by 0.1-0.3 s at load 13). `MESHWORK_BUNDLE=0` always takes the
 * entry point (stack traces through source maps).
 */
export async function serviceEntry(
  dir: string,
  main: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ServiceEntry> {
  const file = join(dir, main);
  const bundle = bundleOf(file);
  if (env.MESHWORK_BUNDLE === "0" || !existsSync(file)) return { file, bundled: false };
  const outputs = await bundleOutputs(bundle);
  if (!outputs) return { file, bundled: false };
  // The CommonJS twin's launcher, which runs it with a V8 code cache (`tools/bundle`'s
  // code-cache.cjs): a bundle built before it had none, and `MESHWORK_CODE_CACHE=0` skips it.
  const launcher = launcherOf(bundle);
  if (env.MESHWORK_CODE_CACHE !== "0" && basename(launcher) in outputs && basename(cjsOf(bundle)) in outputs)
    return { file: launcher, bundled: true };
  return { file: bundle, bundled: true };
}

/**
 * The outputs of the bundle's build when every file its record names is there with the recorded content: each output
 * of its build (the bundle and its chunks, which it imports at start or later; a chunk missing
 * after a failed rebuild crash-looped the service) and each input it was built from. A record
 * without outputs (written before chunks) does not do: its chunks cannot be checked.
 */
async function bundleOutputs(bundle: string): Promise<Record<string, string> | undefined> {
  let record: { inputs?: Record<string, string>; outputs?: Record<string, string> };
  try {
    if (!existsSync(bundle)) return undefined;
    record = JSON.parse(await readFile(inputsRecordOf(bundle), "utf8")) as typeof record;
  } catch {
    return undefined; // no record (a bundle from before it was written) or an unreadable one
  }
  const { inputs, outputs } = record;
  if (!inputs || !outputs || !(basename(bundle) in outputs)) return undefined;
  return (await sameContent(dirname(bundle), { ...outputs, ...inputs })) ? outputs : undefined;
}

/** Whether each file (by path relative to `base`) has the SHA-256 (hex) given for it. */
async function sameContent(base: string, files: Record<string, string>): Promise<boolean> {
  const same = await Promise.all(
    Object.entries(files).map(async ([path, sha]) => {
      try {
        return (
          createHash("sha256")
            .update(await readFile(join(base, path)))
            .digest("hex") === sha
        );
      } catch {
        return false; // deleted since
      }
    }),
  );
  return same.every(Boolean);
}

/** The record `meshwork-bundle` writes beside a bundle: what it was built from. */
export function inputsRecordOf(bundle: string): string {
  return `${bundle}.inputs.json`;
}

/** The bundle's path for an entry point: `dist/main.js` -> `dist/main.bundle.js`. */
export function bundleOf(entry: string): string {
  return entry.replace(/\.js$/, ".bundle.js");
}

/** The bundle's CommonJS twin: `dist/main.bundle.js` -> `dist/main.bundle.cjs`. */
export function cjsOf(bundle: string): string {
  return bundle.replace(/\.js$/, ".cjs");
}

/** The launcher that runs the CommonJS twin with a code cache: `dist/main.bundle.start.cjs`. */
export function launcherOf(bundle: string): string {
  return bundle.replace(/\.js$/, ".start.cjs");
}
