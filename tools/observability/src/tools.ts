import { execFile } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** The absolute path of `name` on the PATH (or in /usr/bin, /usr/sbin), or undefined. */
export function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/bin", "/usr/sbin"];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

/** What a finished command printed, and its exit code. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `promtool args...` in `cwd` and resolves with its output, whatever the exit code. */
export function promtool(args: string[], cwd: string): Promise<RunResult> {
  const bin = findBinary("promtool");
  if (!bin) return Promise.reject(new Error("promtool not found (Debian package prometheus)"));
  return new Promise((resolve, reject) => {
    execFile(bin, args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") reject(err);
      else resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}
