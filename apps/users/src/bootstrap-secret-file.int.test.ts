import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

describe("a bootstrap secret given as a file (a deployment's Secret)", () => {
  let storage: Storage;
  let users: RunningUsers;
  const dir = mkdtempSync(join(tmpdir(), "mw-secret-"));
  const secret = "given-by-the-operator-0123456789";

  beforeAll(async () => {
    storage = await createStorage("pglite");
    writeFileSync(join(dir, "secret"), `${secret}\n`, { mode: 0o600 });
    users = await startUsers(storage, { USERS_BOOTSTRAP_SECRET_FILE: join(dir, "secret") });
  });
  afterAll(async () => {
    await users?.service.shutdown();
    await storage?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  it("creates the first admin with the file's secret and writes no generated one", async () => {
    expect(existsSync(storage.bootstrapFile)).toBe(false);
    const client = createClient(
      UserService,
      createConnectTransport({ baseUrl: users.url, httpVersion: "2" }),
    );
    const req = {
      bootstrapSecret: secret,
      email: "ops@example.com",
      password: "operator password",
      displayName: "Ops",
    };
    expect((await client.createFirstAdmin(req)).user?.roles).toEqual(["customer", "admin"]);
    await expect(client.createFirstAdmin({ ...req, email: "ops2@example.com" })).rejects.toMatchObject({
      code: Code.FailedPrecondition,
    });
    expect(users.logs.join("\n")).not.toContain(secret);
  });
});
