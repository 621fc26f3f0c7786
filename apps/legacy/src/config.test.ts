import { describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";

const DATABASE_URL = "postgres://legacy@127.0.0.1:5432/legacy";
const LEGACY_SYNC_KEY = `k1:${Buffer.alloc(32, 7).toString("base64")}`;

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
    const c = loadConfig({
      DATABASE_URL,
      NATS_URL: "nats://127.0.0.1:4222",
      OUTBOX_BATCH_SIZE: "64",
      LEGACY_SYNC_KEY,
    });
    expect(c.events).toMatchObject({ natsUrl: "nats://127.0.0.1:4222", outbox: { batchSize: 64 } });
    expect(() =>
      loadConfig({
        DATABASE_URL,
        NATS_URL: "nats://127.0.0.1:4222",
        OUTBOX_BATCH_SIZE: "-1",
        LEGACY_SYNC_KEY,
      }),
    ).toThrow(/bad configuration: OUTBOX_BATCH_SIZE/);
    // Without NATS_URL the events settings are not read at all.
    expect(loadConfig({ DATABASE_URL, OUTBOX_BATCH_SIZE: "-1" }).events).toBeUndefined();
  });

  it("refuses to start the data sync without LEGACY_SYNC_KEY, or with a bad one, naming the variable", () => {
    const NATS_URL = "nats://127.0.0.1:4222";
    expect(() => loadConfig({ DATABASE_URL, NATS_URL })).toThrow(
      /LEGACY_SYNC_KEY \(or LEGACY_SYNC_KEY_FILE\) is required/,
    );
    expect(() => loadConfig({ DATABASE_URL, NATS_URL, LEGACY_SYNC_KEY: "k1:c2hvcnQ=" })).toThrow(
      /^LEGACY_SYNC_KEY: key "k1" is not 32 bytes/,
    );
    expect(() => loadConfig({ DATABASE_URL, NATS_URL, LEGACY_SYNC_KEY_FILE: "/nonexistent/key" })).toThrow(
      /^LEGACY_SYNC_KEY_FILE: cannot read/,
    );
    const c = loadConfig({
      DATABASE_URL,
      NATS_URL,
      LEGACY_SYNC_KEY: `k2:${Buffer.alloc(32, 1).toString("base64")},${LEGACY_SYNC_KEY}`,
    });
    expect(c.syncKey?.id).toBe("k2"); // the first key seals
    // Without NATS_URL no key is needed: the monolith runs alone.
    expect(loadConfig({ DATABASE_URL }).syncKey).toBeUndefined();
  });
});
