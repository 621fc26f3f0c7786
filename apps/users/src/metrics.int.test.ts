import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

/** The value of the one series of `name` whose labels include every `labels` pair. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe("users metrics (GET /metrics, on Postgres)", () => {
  let storage: Storage;
  let users: RunningUsers;
  let client: ReturnType<typeof createClient<typeof UserService>>;
  const scrape = async () => (await fetch(`${users.url}/metrics`)).text();

  beforeAll(async () => {
    storage = await createStorage("postgres");
    users = await startUsers(storage, { DB_POOL_MAX: "4" });
    client = createClient(UserService, createConnectTransport({ baseUrl: users.url, httpVersion: "2" }));
  });
  afterAll(async () => {
    await users?.service.shutdown();
    await storage?.remove();
  });

  it("counts committed registrations in users_registered_total, not refused ones", async () => {
    expect(sample(await scrape(), "users_registered_total")).toBeUndefined();
    for (const email of ["m1@example.com", "m2@example.com"]) {
      await client.registerUser({ email, password: "a long password", displayName: "M" });
    }
    const taken = await client
      .registerUser({ email: "m1@example.com", password: "a long password", displayName: "M" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(taken).toMatchObject({ code: Code.AlreadyExists });
    expect(sample(await scrape(), "users_registered_total")).toBe(2);
  });

  it("exports its connection pool: used and idle connections, waiting transactions, the size", async () => {
    const pool = {
      db_client_connection_pool_name: new URL(storage.env.DATABASE_URL ?? "").pathname.slice(1),
    };
    const used = (text: string) =>
      sample(text, "db_client_connection_count", { ...pool, db_client_connection_state: "used" });
    // The registrations above opened connections; between calls they are idle. The service's own
    // background work (outbox relay, event consumers) may hold one for a moment at any scrape, so
    // wait for a scrape that catches the pool at rest.
    const text = await waitFor(async () => {
      const t = await scrape();
      return used(t) === 0 && t;
    });
    expect(sample(text, "db_client_connection_max", pool)).toBe(4);
    expect(sample(text, "db_client_connection_pending_requests", pool)).toBe(0);
    const idle = sample(text, "db_client_connection_count", { ...pool, db_client_connection_state: "idle" });
    expect(used(text)).toBe(0);
    expect(idle).toBeGreaterThanOrEqual(1);
    expect((used(text) ?? 0) + (idle ?? 0)).toBeLessThanOrEqual(4);
  });
});
