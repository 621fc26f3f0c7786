import { describe, expect, it } from "vitest";
import { toNatsCredentials } from "./config.js";

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
