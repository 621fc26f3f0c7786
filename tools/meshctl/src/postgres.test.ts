import { describe, expect, it } from "vitest";
import { LOCAL_POOL_IDLE_TIMEOUT_S, LOCAL_POOL_MAX, localPoolEnv } from "./postgres.js";

describe("the local mesh's pool settings", () => {
  it("close idle pooled connections sooner than a service's default", () => {
    expect(localPoolEnv({}).DB_POOL_IDLE_TIMEOUT_S).toBe(String(LOCAL_POOL_IDLE_TIMEOUT_S));
    expect(LOCAL_POOL_IDLE_TIMEOUT_S).toBeLessThan(30);
  });

  it("open fewer connections per service than a service's default", () => {
    expect(localPoolEnv({}).DB_POOL_MAX).toBe(String(LOCAL_POOL_MAX));
    expect(LOCAL_POOL_MAX).toBeLessThan(10);
  });

  it("leave what the environment sets alone", () => {
    expect(localPoolEnv({ DB_POOL_IDLE_TIMEOUT_S: "60" })).toEqual({ DB_POOL_MAX: String(LOCAL_POOL_MAX) });
    expect(localPoolEnv({ DB_POOL_MAX: "8" })).toEqual({
      DB_POOL_IDLE_TIMEOUT_S: String(LOCAL_POOL_IDLE_TIMEOUT_S),
    });
    expect(localPoolEnv({ DB_POOL_MAX: "8", DB_POOL_IDLE_TIMEOUT_S: "60" })).toEqual({});
  });
});
