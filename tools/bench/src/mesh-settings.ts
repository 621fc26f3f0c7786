import { readFile } from "node:fs/promises";

/** How a mesh runs one of its Node processes: its script, the flags before it, its pool settings. */
export interface RunSettings {
  /** The file Node runs: a service's bundle launcher (`dist/main.bundle.start.cjs`, or `dist/main.bundle.js`) unless `MESHWORK_BUNDLE=0`. */
  script: string;
  nodeArgs: string[];
  env: Record<string, string>;
}

/**
 * The script, Node flags and `DB_POOL_*` settings a process runs with, from its
 * `/proc/<pid>/cmdline` and `/proc/<pid>/environ` (NUL-separated): the flags are the `--`
 * arguments between the node binary and the script, less `--cpu-prof*` (a profile of the mesh is
 * not a setting to copy); the script is the first argument after them. The bench starts its own
 * users service on the mesh's database with these, so GetUser runs the file `npm start` runs
 * (the service's bundle, not `dist/main.js`), with the flags and pool `meshctl up` gives it
 * (`node-args.ts`, `postgres.ts`), not with Node's and the service's defaults. Its log level and
 * trace export stay the bench's (`warn`, none): not copied.
 */
export function runSettingsOf(cmdline: string, environ: string): RunSettings {
  const args = cmdline.split("\0").filter(Boolean).slice(1);
  const flags: string[] = [];
  let script: string | undefined;
  for (const arg of args) {
    if (!arg.startsWith("--")) {
      script = arg;
      break;
    }
    if (!arg.startsWith("--cpu-prof")) flags.push(arg);
  }
  if (!script) throw new Error(`no script in the command line ${JSON.stringify(args)}`);
  const env: Record<string, string> = {};
  for (const entry of environ.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0 && entry.startsWith("DB_POOL_")) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { script, nodeArgs: flags, env };
}

/** {@link runSettingsOf} of a running process. */
export async function runSettingsOfPid(pid: number): Promise<RunSettings> {
  const [cmdline, environ] = await Promise.all([
    readFile(`/proc/${pid}/cmdline`, "utf8"),
    readFile(`/proc/${pid}/environ`, "utf8"),
  ]);
  return runSettingsOf(cmdline, environ);
}
