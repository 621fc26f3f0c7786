import { describe, expect, it, vi } from "vitest";
import {
  DEFAULT_AUTH_RATE_LIMITS,
  parseRateLimits,
  RateLimiter,
  RULE_CACHE_PATHS,
  rateRefusal,
} from "./ratelimit.js";

describe("rate limits", () => {
  it("parses rules and names a bad one", () => {
    const rules = parseRateLimits("*=100/1s:200; meshwork.users.v1.UserService/Login=5/1m ;a.B=10/500ms:1");
    expect(rules.map((r) => [r.key, r.perSecond, r.burst])).toEqual([
      ["*", 100, 200],
      ["meshwork.users.v1.UserService/Login", 5 / 60, 5],
      ["a.B", 20, 1],
    ]);
    expect(() => parseRateLimits("x=ten/1s")).toThrow(/RATE_LIMITS/);
    expect(() => parseRateLimits("x=0/1s")).toThrow(/positive/);
  });

  it("takes from a bucket per rule and client, refills with time, and says when to retry", () => {
    const limiter = new RateLimiter(parseRateLimits("*=1/1s:3;a.B/Slow=1/10s:1"));
    const at = (s: number) => s * 1000;
    for (let i = 0; i < 3; i++) expect(limiter.take("/x.Y/Z", "alice", at(0)).allowed).toBe(true);
    expect(limiter.take("/x.Y/Z", "alice", at(0))).toMatchObject({ allowed: false, retryAfterS: 1 });
    expect(limiter.take("/x.Y/Z", "bob", at(0)).allowed).toBe(true); // another client
    expect(limiter.take("/x.Y/Z", "alice", at(1)).allowed).toBe(true); // refilled one token
    expect(limiter.take("/a.B/Slow", "alice", at(1)).allowed).toBe(true); // its own rule
    expect(limiter.take("/a.B/Slow", "alice", at(2))).toMatchObject({ allowed: false, retryAfterS: 9 });
    expect(new RateLimiter([]).take("/x.Y/Z", "alice").allowed).toBe(true);
  });

  it("works a path's rule out once, and past the cached paths still finds every rule", () => {
    const limiter = new RateLimiter(parseRateLimits("*=100/1s:100;a.B=1/1s:1;a.B/Slow=1/10s:1"));
    expect(limiter.ruleFor("/a.B/Fast")?.key).toBe("a.B");
    const split = vi.spyOn(String.prototype, "split");
    try {
      // The second lookup of a path is remembered: no service name is split out of it again.
      expect(limiter.ruleFor("/a.B/Fast")?.key).toBe("a.B");
      expect(split).not.toHaveBeenCalled();
    } finally {
      split.mockRestore();
    }
    for (let i = 0; i < RULE_CACHE_PATHS + 10; i++) expect(limiter.ruleFor(`/x.Y/M${i}`)?.key).toBe("*");
    expect(limiter.ruleFor("/a.B/Slow")?.key).toBe("a.B/Slow");
    expect(limiter.ruleFor("/c.D/E")?.key).toBe("*");
    expect(new RateLimiter(parseRateLimits("a.B=1/1s:1")).ruleFor("/c.D/E")).toBeUndefined();
  });

  it("counts the authentication methods per client address whatever token a call carries", () => {
    const LOGIN = "/meshwork.users.v1.UserService/Login";
    const limiter = new RateLimiter(
      parseRateLimits("*=100/1s:100"),
      parseRateLimits("meshwork.users.v1.UserService/Login=3/1m:3"),
    );
    // A fresh subject (a token of a fresh account) per attempt buys no fresh bucket.
    for (let i = 0; i < 3; i++)
      expect(limiter.takeForCall(LOGIN, `subject-${i}`, "10.0.0.1", 0).allowed).toBe(true);
    expect(limiter.takeForCall(LOGIN, "subject-9", "10.0.0.1", 0)).toMatchObject({
      allowed: false,
      retryAfterS: 20,
    });
    expect(limiter.takeForCall(LOGIN, undefined, "10.0.0.1", 0).allowed).toBe(false);
    // Another address has its own; other methods keep counting per subject.
    expect(limiter.takeForCall(LOGIN, undefined, "10.0.0.2", 0).allowed).toBe(true);
    expect(limiter.takeForCall("/x.Y/Z", "subject-1", "10.0.0.1", 0).allowed).toBe(true);
  });

  it("limits Login, RegisterUser, CreateFirstAdmin and ExchangeLegacyToken by default, only those", () => {
    const rules = parseRateLimits(DEFAULT_AUTH_RATE_LIMITS);
    expect(rules.map((r) => r.key).sort()).toEqual([
      "meshwork.users.v1.UserService/CreateFirstAdmin",
      "meshwork.users.v1.UserService/ExchangeLegacyToken",
      "meshwork.users.v1.UserService/Login",
      "meshwork.users.v1.UserService/RegisterUser",
    ]);
    expect(() => new RateLimiter([], parseRateLimits("*=1/1s"))).toThrow(/name one method/);
  });

  it("forgets idle buckets, so memory follows the active clients", () => {
    const limiter = new RateLimiter(parseRateLimits("*=1000/1s:10"));
    for (let i = 0; i < 5000; i++) limiter.take("/x.Y/Z", `client-${i}`, i);
    expect(limiter.size).toBeLessThan(2048);
  });

  it("refuses in one way wherever the gateway refuses: the rule, when to retry, and quota headers", () => {
    const [rule] = parseRateLimits("a.B=5/1m:2");
    if (!rule) throw new Error("no rule");
    expect(rateRefusal({ rule, retryAfterS: 12 })).toEqual({
      message: "rate limit a.B=5/1m:2 exceeded; retry in 12s",
      headers: {
        "retry-after": "12",
        "x-ratelimit-limit": "2",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "12",
      },
    });
  });
});
