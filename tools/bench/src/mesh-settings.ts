import { readFile } from "node:fs/promises";

/** How a mesh runs one of its Node processes: the flags before its script, its pool settings. */
export interface RunSettings {
  nodeArgs: string[];
  env: Record<string, string>;
}

/**
 * The Node flags and `DB_POOL_*` settings a process runs with, from its `/proc/<pid>/cmdline`
 * and `/proc/<pid>/environ` (NUL-separated): the flags are the `--` arguments between the node
 * binary and the script, less `--cpu-prof*` (a profile of the mesh is not a setting to copy).
 * The bench starts its own users service on the mesh's database with these, so GetUser is
 * measured as `npm start` runs the service (`meshctl up` sets them: `node-args.ts`,
 * `postgres.ts`), not with Node's and the service's defaults.
 */
export function runSettingsOf(cmdline: string, environ: string): RunSettings {
  const args = cmdline.split("\0").filter(Boolean).slice(1);
  const flags: string[] = [];
  for (const arg of args) {
    if (!arg.startsWith("--")) break;
    if (!arg.startsWith("--cpu-prof")) flags.push(arg);
  }
  const env: Record<string, string> = {};
  for (const entry of environ.split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0 && entry.startsWith("DB_POOL_")) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return { nodeArgs: flags, env };
}

/** {@link runSettingsOf} of a running process. */
export async function runSettingsOfPid(pid: number): Promise<RunSettings> {
  const [cmdline, environ] = await Promise.all([
    readFile(`/proc/${pid}/cmdline`, "utf8"),
    readFile(`/proc/${pid}/environ`, "utf8"),
  ]);
  return runSettingsOf(cmdline, environ);
}
