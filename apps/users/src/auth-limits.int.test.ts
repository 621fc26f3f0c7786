import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

const WINDOW_S = 3;

describe("failed authentications per account", () => {
  let storage: Storage;
  let users: RunningUsers;
  let client: ReturnType<typeof createClient<typeof UserService>>;

  beforeAll(async () => {
    storage = await createStorage("postgres");
    users = await startUsers(storage, {
      USERS_AUTH_MAX_FAILURES: "3",
      USERS_AUTH_FAILURE_WINDOW_S: String(WINDOW_S),
    });
    client = createClient(UserService, createConnectTransport({ baseUrl: users.url, httpVersion: "2" }));
  });
  afterAll(async () => {
    await users?.service.shutdown();
    await storage?.remove();
  });

  const attempt = (email: string, password: string) =>
    client.login({ email, password }).then(
      () => "ok" as const,
      (e: unknown) => ConnectError.from(e),
    );

  it("locks an account after 3 failures until the window ends, even for the right password, with retry-after", async () => {
    await client.registerUser({ email: "victim@example.com", password: "the right one", displayName: "V" });
    for (let i = 0; i < 3; i++) {
      expect(await attempt("VICTIM@example.com ", `guess ${i}`)).toMatchObject({
        code: Code.Unauthenticated,
      });
    }
    const locked = await attempt("victim@example.com", "the right one");
    expect(locked).toMatchObject({ code: Code.ResourceExhausted });
    const retryAfter = Number((locked as ConnectError).metadata.get("retry-after"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(WINDOW_S);
    // Another account is not affected.
    await client.registerUser({
      email: "bystander@example.com",
      password: "the right one",
      displayName: "B",
    });
    expect(await attempt("bystander@example.com", "the right one")).toBe("ok");
    // Once the window has passed, the right password works again (and clears the count).
    await waitFor(async () => (await attempt("victim@example.com", "the right one")) === "ok", {
      timeoutMs: (WINDOW_S + 5) * 1000,
      intervalMs: 250,
      what: "the lock to end",
    });
    expect(await attempt("victim@example.com", "wrong again")).toMatchObject({ code: Code.Unauthenticated });
    expect(await attempt("victim@example.com", "the right one")).toBe("ok");
  });

  it("locks an unknown email alike, so the lock does not tell which emails exist", async () => {
    for (let i = 0; i < 3; i++) {
      expect(await attempt("nobody@example.com", `guess ${i}`)).toMatchObject({ code: Code.Unauthenticated });
    }
    expect(await attempt("nobody@example.com", "guess")).toMatchObject({ code: Code.ResourceExhausted });
  });

  it("lets no more than 3 of 10 parallel guesses be checked", async () => {
    const answers = await Promise.all(
      Array.from({ length: 10 }, (_, i) => attempt("parallel@example.com", `parallel guess ${i}`)),
    );
    const codes = answers.map((a) => (a === "ok" ? "ok" : Code[a.code]));
    expect(codes.filter((c) => c === "Unauthenticated")).toHaveLength(3);
    expect(codes.filter((c) => c === "ResourceExhausted")).toHaveLength(7);
  });

  it("locks the bootstrap after 3 wrong secrets, the right one included", async () => {
    const { readFileSync } = await import("node:fs");
    const secret = readFileSync(storage.bootstrapFile, "utf8").trim();
    const req = { email: "first@example.com", password: "the first admin!", displayName: "F" };
    for (let i = 0; i < 3; i++) {
      await expect(
        client.createFirstAdmin({ ...req, bootstrapSecret: `wrong-secret-${i}-xxxxxx` }),
      ).rejects.toMatchObject({
        code: Code.PermissionDenied,
      });
    }
    const locked = await client
      .createFirstAdmin({ ...req, bootstrapSecret: secret })
      .catch((e: unknown) => ConnectError.from(e));
    expect(locked).toMatchObject({ code: Code.ResourceExhausted });
    expect(Number((locked as ConnectError).metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
  });
});
