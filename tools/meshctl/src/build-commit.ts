import { execFile } from "node:child_process";

/**
 * The commit of the tree `up` starts the mesh from (12 hex digits, `-dirty` when anything is
 * changed or untracked), given to every process as `MESHWORK_BUILD_COMMIT`: `npm start` builds
 * that tree just before. Undefined outside a git work tree or without git. Asynchronous: `up`
 * asks while NATS and Postgres start (`git status` walks the tree; run synchronously it held
 * meshctl's event loop before any service was started).
 */
export async function sourceCommit(root: string): Promise<string | undefined> {
  const git = (args: string[]) =>
    new Promise<{ ok: boolean; stdout: string }>((resolve) =>
      execFile("git", args, { cwd: root, encoding: "utf8", timeout: 10_000 }, (err, stdout) =>
        resolve({ ok: !err, stdout: String(stdout ?? "") }),
      ),
    );
  const head = await git(["rev-parse", "--short=12", "HEAD"]);
  if (!head.ok || !/^[0-9a-f]{7,40}$/.test(head.stdout.trim())) return undefined;
  const status = await git(["status", "--porcelain"]);
  return `${head.stdout.trim()}${status.ok && status.stdout.trim() !== "" ? "-dirty" : ""}`;
}
