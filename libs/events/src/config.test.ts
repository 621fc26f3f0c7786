import { describe, expect, it } from "vitest";
import { z } from "zod";
import { eventsEnvShape, toEventsConfig, toNatsCredentials } from "./config.js";

describe("NATS credentials", () => {
  it("are both NATS_USER and NATS_PASSWORD, or neither", () => {
    expect(toNatsCredentials({})).toBeUndefined();
    expect(toNatsCredentials({ NATS_USER: "orders", NATS_PASSWORD: "pw" })).toEqual({
      user: "orders",
      password: "pw",
    });
    expect(() => toNatsCredentials({ NATS_USER: "orders" })).toThrow(
      /NATS_USER and NATS_PASSWORD go together/,
    );
  });
});

describe("OUTBOX_RETENTION_H", () => {
  const parse = (env: Record<string, string>) => toEventsConfig(z.object(eventsEnvShape()).parse(env));

  it("may be 0 (sent rows deleted as they are claimed), not negative", () => {
    expect(parse({}).outbox.retentionMs).toBe(24 * 3_600_000);
    expect(parse({ OUTBOX_RETENTION_H: "0" }).outbox.retentionMs).toBe(0);
    expect(() => parse({ OUTBOX_RETENTION_H: "-1" })).toThrow();
  });

  it("is refused when empty, not read as 0 (which deletes sent rows)", () => {
    expect(() => parse({ OUTBOX_RETENTION_H: "" })).toThrow(/number of hours/);
    expect(() => parse({ OUTBOX_RETENTION_H: " " })).toThrow(/number of hours/);
    expect(parse({ OUTBOX_RETENTION_H: "1.5" }).outbox.retentionMs).toBe(1.5 * 3_600_000);
  });
});

describe("CONSUMER_LINGER_MS", () => {
  const parse = (env: Record<string, string>) => toEventsConfig(z.object(eventsEnvShape()).parse(env));

  it("defaults to a few ms, may be 0 (off), and is bounded far below any ack wait", () => {
    expect(parse({}).consumer.lingerMs).toBe(5);
    expect(parse({ CONSUMER_LINGER_MS: "0" }).consumer.lingerMs).toBe(0);
    expect(parse({ CONSUMER_LINGER_MS: "10" }).consumer.lingerMs).toBe(10);
    for (const bad of ["-1", "101", "2.5", "abc", "5ms"]) {
      expect(() => parse({ CONSUMER_LINGER_MS: bad }), bad).toThrow(/CONSUMER_LINGER_MS/);
    }
  });
});
