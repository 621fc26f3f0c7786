import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";

const DATABASE_URL = "postgres://legacy@127.0.0.1:5432/legacy";

describe("the monolith's configuration", () => {
  it("reads the defaults, and an empty variable means unset", () => {
    const c = loadConfig({ DATABASE_URL, PORT: "", LEGACY_SEED: "" });
    expect(c).toMatchObject({ host: "127.0.0.1", port: 8090, databaseUrl: DATABASE_URL, seed: true });
    expect(c.events).toBeUndefined(); // no NATS_URL: the monolith runs alone
  });

  it("names every bad variable in one message", () => {
    let message = "";
    try {
      loadConfig({ DATABASE_URL: "mysql://x", PORT: "70000" });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^bad configuration: /);
    expect(message).toContain("DATABASE_URL: must be a postgres:// URL");
    expect(message).toMatch(/PORT: /);
    expect(() => loadConfig({ DATABASE_URL, LEGACY_TOKEN_SECRET: "short" })).toThrow(/LEGACY_TOKEN_SECRET/);
  });

  it("reads the data sync's events settings only with NATS_URL, and names a bad one", () => {
    const c = loadConfig({ DATABASE_URL, NATS_URL: "nats://127.0.0.1:4222", OUTBOX_BATCH_SIZE: "64" });
    expect(c.events).toMatchObject({ natsUrl: "nats://127.0.0.1:4222", outbox: { batchSize: 64 } });
    expect(() =>
      loadConfig({ DATABASE_URL, NATS_URL: "nats://127.0.0.1:4222", OUTBOX_BATCH_SIZE: "-1" }),
    ).toThrow(/bad configuration: OUTBOX_BATCH_SIZE/);
    // Without NATS_URL the events settings are not read at all.
    expect(loadConfig({ DATABASE_URL, OUTBOX_BATCH_SIZE: "-1" }).events).toBeUndefined();
  });
});
