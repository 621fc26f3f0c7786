import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import type { PostgresBinaries } from "./binaries.js";
import type { ServerAccount } from "./os-user.js";

/** What is kept beside the data directory (`<dataDir>.json`, mode 0600): the superuser's password. */
export interface ServerState {
  superuser: string;
  password: string;
}

export function stateFile(dataDir: string): string {
  return `${dataDir}.json`;
}

export function readState(dataDir: string): ServerState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(dataDir), "utf8")) as ServerState;
  } catch {
    return undefined;
  }
}

/** Whether `dataDir` holds an initialised cluster. */
export function isInitialised(dataDir: string): boolean {
  return existsSync(join(dataDir, "PG_VERSION"));
}

/**
 * Creates the cluster with `initdb`: superuser `postgres` with a random password (kept in
 * {@link stateFile}), password (SCRAM) authentication for every TCP connection, UTF-8 with the C
 * locale (the same on every machine). initdb runs in `<dataDir>.initdb` and the result is renamed
 * into place, so a first start that was killed half-way leaves no half-made data directory.
 */
export async function initialise(
  bins: PostgresBinaries,
  dataDir: string,
  account: ServerAccount | undefined,
  ephemeral: boolean,
): Promise<ServerState> {
  const state: ServerState = { superuser: "postgres", password: randomBytes(18).toString("base64url") };
  const work = `${dataDir}.initdb`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { mode: 0o700 });
  const pwfile = join(work, "..", `.${randomBytes(6).toString("hex")}.pw`);
  writeFileSync(pwfile, `${state.password}\n`, { mode: 0o600 });
  if (account) {
    chownSync(work, account.uid, account.gid);
    chownSync(pwfile, account.uid, account.gid);
  }
  try {
    const output: string[] = [];
    const code = await new Promise<number | string>((resolve) => {
      const child = spawn(
        bins.initdb,
        [
          `--pgdata=${work}`,
          `--username=${state.superuser}`,
          `--pwfile=${pwfile}`,
          "--auth-host=scram-sha-256",
          "--auth-local=scram-sha-256",
          "--encoding=UTF8",
          "--locale=C",
          "--no-instructions",
          ...(ephemeral ? ["--no-sync"] : []),
        ],
        {
          stdio: ["ignore", "pipe", "pipe"],
          env: { ...process.env, LC_ALL: "C" },
          ...(account ? { uid: account.uid, gid: account.gid } : {}),
        },
      );
      child.stdout.on("data", (d: Buffer) => output.push(d.toString()));
      child.stderr.on("data", (d: Buffer) => output.push(d.toString()));
      child.once("error", (err) => resolve(err.message));
      child.once("exit", (c, signal) => resolve(c ?? signal ?? -1));
    });
    if (code !== 0)
      throw new Error(`initdb failed (${code}): ${output.join("").trim().split("\n").slice(-5).join(" | ")}`);
  } finally {
    rmSync(pwfile, { force: true });
  }
  writeFileSync(stateFile(dataDir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  chmodSync(stateFile(dataDir), 0o600);
  renameSync(work, dataDir);
  return state;
}
