import { describe, expect, it } from "vitest";
import { Code } from "../errors.js";
import { parseRateLimits, RateLimiter } from "../ratelimit.js";
import type { Route } from "../routes.js";
import { admit, corsOriginOf, deadlineOf, isPreflight, preflightHeaders, rateLimit } from "./admission.js";

const route: Route = {
  prefix: "/a.B/",
  service: "a.B",
  cluster: "a",
  methods: ["Get"],
  retryable: new Set(["Get"]),
  getAllowed: new Set(["Get"]),
};
const rules = {
  policies: new Map([["/a.B/Get", { kind: "public" } as const]]),
  defaultTimeoutMs: 15_000,
  maxTimeoutMs: 60_000,
};

describe("admission: CORS", () => {
  it("allows an origin that is listed, or any with *, and none without an Origin header", () => {
    expect(corsOriginOf({ origin: "https://a.example" }, ["https://a.example"])).toBe("https://a.example");
    expect(corsOriginOf({ origin: "https://b.example" }, ["https://a.example"])).toBeUndefined();
    expect(corsOriginOf({ origin: "https://b.example" }, ["*"])).toBe("https://b.example");
    expect(corsOriginOf({}, ["*"])).toBeUndefined();
    expect(corsOriginOf({ origin: "https://a.example" }, [])).toBeUndefined();
  });

  it("answers preflights (OPTIONS asking for a method) and only those", () => {
    expect(isPreflight("OPTIONS", { "access-control-request-method": "POST" })).toBe(true);
    expect(isPreflight("OPTIONS", {})).toBe(false);
    expect(isPreflight("POST", { "access-control-request-method": "POST" })).toBe(false);
    expect(preflightHeaders(false)).toEqual({});
    const allowed = preflightHeaders(true);
    expect(String(allowed["access-control-allow-methods"])).toContain("POST");
    expect(String(allowed["access-control-allow-headers"]).toLowerCase()).toContain("authorization");
    expect(String(allowed["access-control-allow-headers"]).toLowerCase()).toContain("x-request-id");
    expect(allowed["access-control-max-age"]).toBe("7200");
  });
});

describe("admission: deadline", () => {
  it("takes the client's deadline in either protocol, capped, else the default", () => {
    expect(deadlineOf({}, 15_000, 60_000)).toEqual({ ms: 15_000 });
    expect(deadlineOf({ "grpc-timeout": "2S" }, 15_000, 60_000)).toEqual({ ms: 2_000 });
    expect(deadlineOf({ "grpc-timeout": "5M" }, 15_000, 60_000)).toEqual({ ms: 60_000 });
    expect(deadlineOf({ "connect-timeout-ms": "250" }, 15_000, 60_000)).toEqual({ ms: 250 });
    expect(deadlineOf({}, 90_000, 60_000)).toEqual({ ms: 60_000 });
  });

  it("names a malformed deadline", () => {
    expect(deadlineOf({ "grpc-timeout": "soon" }, 15_000, 60_000).error).toMatch(/grpc timeout/);
    expect(deadlineOf({ "connect-timeout-ms": "-1" }, 15_000, 60_000).error).toMatch(/connect-timeout-ms/);
  });
});

describe("admission: route, deadline, method, in that order", () => {
  it("admits a known method of a route with its policy and deadline", () => {
    expect(admit(rules, route, "/a.B/Get?x=1", "/a.B/Get", { "grpc-timeout": "1S" })).toEqual({
      ok: true,
      policy: { kind: "public" },
      deadlineMs: 1_000,
    });
  });

  it("refuses with the code and message the client gets", () => {
    expect(admit(rules, undefined, "/x.Y/Z", "/x.Y/Z", { "grpc-timeout": "bad" })).toEqual({
      ok: false,
      code: Code.Unimplemented,
      message: "no route for /x.Y/Z",
    });
    expect(admit(rules, route, "/a.B/Nope", "/a.B/Nope", { "grpc-timeout": "bad" })).toMatchObject({
      ok: false,
      code: Code.InvalidArgument,
    });
    expect(admit(rules, route, "/a.B/Nope?q", "/a.B/Nope", {})).toEqual({
      ok: false,
      code: Code.Unimplemented,
      message: "unknown method /a.B/Nope?q",
    });
  });
});

describe("admission: rate limit", () => {
  it("counts per verified subject, else per client address, and refuses with quota headers", () => {
    const limiter = new RateLimiter(parseRateLimits("a.B=1/1m:1"));
    const alice = { subject: "alice", roles: [], email: undefined, expiresAt: 0 };
    expect(rateLimit(limiter, "/a.B/Get", alice, "10.0.0.1")).toBeUndefined();
    expect(rateLimit(limiter, "/a.B/Get", undefined, "10.0.0.1")).toBeUndefined(); // another bucket
    const refused = rateLimit(limiter, "/a.B/Get", alice, "10.0.0.2");
    expect(refused).toEqual({
      ok: false,
      code: Code.ResourceExhausted,
      message: "rate limit a.B=1/1m:1 exceeded; retry in 60s",
      headers: {
        "retry-after": "60",
        "x-ratelimit-limit": "1",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": "60",
      },
    });
    expect(rateLimit(limiter, "/a.B/Get", undefined, "10.0.0.1")?.code).toBe(Code.ResourceExhausted);
    expect(rateLimit(limiter, "/a.B/Get", undefined, "10.0.0.3")).toBeUndefined();
  });
});
