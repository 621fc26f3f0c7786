import { readFileSync } from "node:fs";
import { join } from "node:path";
import { bundleOf, launcherOf } from "./node-args.js";
import type { ServiceManifest } from "./services.js";
import { type SupervisionReport, supervisionFile } from "./up.js";

function commandLine(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return undefined;
  }
}

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** Thrown when another `meshctl up` still runs with the same home. */
export class MeshAlreadyUpError extends Error {
  override readonly name = "MeshAlreadyUpError";
}

/**
 * Clears what a `meshctl up` killed with SIGKILL left behind in `home`: its supervision file
 * names the processes it ran, and those still running (checked by their command line, so a
 * recycled pid is left alone) are stopped (SIGTERM, SIGKILL after 10 s), so they hold no port
 * and no database connection the new run needs. (The embedded Postgres server it left is found
 * again by `startEmbeddedPostgres` and reused.) Refuses when that `up` is itself still running.
 */
export async function clearLeftovers(
  home: string,
  services: readonly ServiceManifest[],
  say: (line: string) => void,
): Promise<void> {
  let report: SupervisionReport;
  try {
    report = JSON.parse(readFileSync(supervisionFile(home), "utf8")) as SupervisionReport;
  } catch {
    return; // none: the last run stopped cleanly, or there was none
  }
  if (report.pid !== process.pid && alive(report.pid) && commandLine(report.pid)?.includes("meshctl")) {
    throw new MeshAlreadyUpError(
      `another meshctl up (pid ${report.pid}) is running with ${home}: stop it first (Ctrl-C there)`,
    );
  }
  const left = report.children.flatMap((c) => {
    // `orders#2`: a further instance of orders (`up --replicas`).
    const manifest = services.find((s) => s.name === c.name.split("#")[0]);
    if (!c.pid || !manifest || !alive(c.pid)) return [];
    // Started from its entry point, the bundle beside it or the bundle's code-cache launcher.
    const entry = join(manifest.dir, manifest.main);
    const line = commandLine(c.pid);
    const files = [entry, bundleOf(entry), launcherOf(bundleOf(entry))];
    return files.some((f) => line?.includes(f)) ? [{ name: c.name, pid: c.pid }] : [];
  });
  if (left.length === 0) return;
  say(
    `an earlier meshctl up (pid ${report.pid}) was killed and left ${left.map((l) => `${l.name} (pid ${l.pid})`).join(", ")} running: stopping them`,
  );
  for (const l of left) process.kill(l.pid, "SIGTERM");
  const deadline = Date.now() + 10_000;
  while (left.some((l) => alive(l.pid)) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  for (const l of left.filter((x) => alive(x.pid))) process.kill(l.pid, "SIGKILL");
}
