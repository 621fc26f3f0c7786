import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";

/** Where the users service run by `up` writes its one-time bootstrap secret (mode 0600). */
export const bootstrapSecretFile = (home: string) => join(home, "bootstrap-secret");
/** Where `meshctl demo` keeps the admin it created for itself (mode 0600). */
export const demoAdminFile = (home: string) => join(home, "demo-admin.json");

export interface AdminAccount {
  email: string;
  password: string;
}

/** Writes a file only its owner can read, created anew so an older file's mode cannot survive. */
export function writeOwnerOnly(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  rmSync(file, { force: true });
  writeFileSync(file, text, { mode: 0o600, flag: "wx" });
}

/**
 * Creates the first admin through the gateway with the bootstrap secret (CreateFirstAdmin), then
 * removes the secret file, which is spent. Throws the call's ConnectError (PERMISSION_DENIED for a
 * wrong secret, FAILED_PRECONDITION once an admin exists).
 */
export async function createFirstAdmin(options: {
  gateway: string;
  secretFile: string;
  account: AdminAccount;
  displayName: string;
}): Promise<{ id: string }> {
  const secret = readFileSync(options.secretFile, "utf8").trim();
  const users = createClient(UserService, createGrpcTransport({ baseUrl: options.gateway }));
  const { user } = await users.createFirstAdmin({
    bootstrapSecret: secret,
    email: options.account.email,
    password: options.account.password,
    displayName: options.displayName,
  });
  rmSync(options.secretFile, { force: true });
  return { id: user?.id ?? "" };
}

/**
 * The demo's admin: the one it created on an earlier run (kept owner-only in `demo-admin.json`),
 * else a new one with a random email and password through the bootstrap secret `up` left. No
 * password is written in the source; undefined when neither exists (an operator made the admin).
 */
export async function demoAdmin(gateway: string, home: string): Promise<AdminAccount | undefined> {
  const saved = demoAdminFile(home);
  if (existsSync(saved)) return JSON.parse(readFileSync(saved, "utf8")) as AdminAccount;
  const secretFile = bootstrapSecretFile(home);
  if (!existsSync(secretFile)) return undefined;
  const account = {
    email: `demo-admin-${randomBytes(4).toString("hex")}@meshwork.local`,
    password: randomBytes(18).toString("base64url"),
  };
  // Saved first: should the call succeed and this process die, the account is not lost.
  writeOwnerOnly(saved, JSON.stringify(account));
  try {
    await createFirstAdmin({ gateway, secretFile, account, displayName: "Demo admin" });
  } catch (err) {
    rmSync(saved, { force: true });
    throw err;
  }
  return account;
}

/** Reads a password: from a file, else stdin (piped: the first line; a terminal: typed, not echoed). */
export async function readPassword(
  passwordFile: string | undefined,
  prompt: NodeJS.WritableStream,
): Promise<string> {
  if (passwordFile) return readFileSync(passwordFile, "utf8").replace(/\r?\n$/, "");
  const input = process.stdin;
  if (!input.isTTY) {
    let text = "";
    for await (const chunk of input) text += String(chunk);
    return text.split(/\r?\n/)[0] ?? "";
  }
  prompt.write("password (not shown): ");
  const rl = createInterface({ input, terminal: true });
  // Echo nothing of what is typed.
  (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => {};
  const line = await new Promise<string>((resolve) => rl.question("", resolve));
  rl.close();
  prompt.write("\n");
  return line;
}

/** `meshctl admin create --email X [--password-file F] [--display-name N] [--secret-file F] [--gateway URL]`. */
export async function adminCreateCommand(options: {
  gateway: string;
  home: string;
  email: string | undefined;
  displayName: string | undefined;
  passwordFile: string | undefined;
  secretFile: string | undefined;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}): Promise<number> {
  if (!options.email) {
    options.err.write("meshctl admin create: --email is required\n");
    return 2;
  }
  const secretFile = options.secretFile ?? bootstrapSecretFile(options.home);
  if (!existsSync(secretFile)) {
    options.err.write(
      `meshctl admin create: no bootstrap secret at ${secretFile}: the users service writes it while no admin exists (or give --secret-file)\n`,
    );
    return 1;
  }
  const password = await readPassword(options.passwordFile, options.err);
  try {
    const { id } = await createFirstAdmin({
      gateway: options.gateway,
      secretFile,
      account: { email: options.email, password },
      displayName: options.displayName ?? options.email,
    });
    options.out.write(`admin ${options.email} created (${id}); the bootstrap secret is spent\n`);
    return 0;
  } catch (e) {
    const err = ConnectError.from(e);
    options.err.write(`meshctl admin create: ${Code[err.code]}: ${err.rawMessage}\n`);
    return 1;
  }
}
