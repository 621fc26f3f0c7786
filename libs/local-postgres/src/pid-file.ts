import { readFileSync } from "node:fs";
import { join } from "node:path";

/** What `postmaster.pid` in a data directory says about the server holding it. */
export interface PostmasterPid {
  pid: number;
  port: number;
  /** `starting`, `ready`, `stopping`, `standby` (the 8th line). */
  status: string;
}

/** Reads `<dataDir>/postmaster.pid`; `undefined` when there is none (no server, or a clean stop). */
export function readPostmasterPid(dataDir: string): PostmasterPid | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, "postmaster.pid"), "utf8");
  } catch {
    return undefined;
  }
  const lines = text.split("\n");
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  return { pid, port: Number(lines[3]), status: (lines[7] ?? "").trim() };
}

/**
 * Whether `pid` is a running PostgreSQL process (not exited, not a zombie waiting to be
 * reaped, and not another program that got the pid of a server that died).
 */
export function isLivePostgres(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return comm === "postgres" && state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}
