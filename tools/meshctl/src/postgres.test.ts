import { describe, expect, it } from "vitest";
import { LOCAL_POOL_IDLE_TIMEOUT_S, localPoolEnv } from "./postgres.js";

describe("the local mesh's pool settings", () => {
  it("close idle pooled connections sooner than a service's default", () => {
    expect(localPoolEnv({})).toEqual({ DB_POOL_IDLE_TIMEOUT_S: String(LOCAL_POOL_IDLE_TIMEOUT_S) });
    expect(LOCAL_POOL_IDLE_TIMEOUT_S).toBeLessThan(30);
  });

  it("leave an idle timeout set in the environment alone", () => {
    expect(localPoolEnv({ DB_POOL_IDLE_TIMEOUT_S: "60" })).toEqual({});
  });
});
