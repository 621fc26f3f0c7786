import { spawnSync } from "node:child_process";

/**
 * The commit of the tree `up` starts the mesh from (12 hex digits, `-dirty` when anything is
 * changed or untracked), given to every process as `MESHWORK_BUILD_COMMIT`: `npm start` builds
 * that tree just before. Undefined outside a git work tree or without git.
 */
export function sourceCommit(root: string): string | undefined {
  const git = (args: string[]) => spawnSync("git", args, { cwd: root, encoding: "utf8", timeout: 10_000 });
  const head = git(["rev-parse", "--short=12", "HEAD"]);
  if (head.status !== 0 || !/^[0-9a-f]{7,40}$/.test(head.stdout.trim())) return undefined;
  const status = git(["status", "--porcelain"]);
  return `${head.stdout.trim()}${status.status === 0 && status.stdout.trim() !== "" ? "-dirty" : ""}`;
}
