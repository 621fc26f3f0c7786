import { describe, expect, it } from "vitest";
import type { Route } from "../routes.js";
import { backoffMs, isRetryable, mayRetry, RetryBudget, unavailableAnswer } from "./retry.js";

const policy = { maxAttempts: 3, baseBackoffMs: 25, budgetPercent: 20, minConcurrency: 3 };

describe("retry decisions", () => {
  it("keeps retries in flight under the budget: a share of the calls in flight, or a few", () => {
    const budget = new RetryBudget(policy);
    budget.active = 10; // 20% is 2: the minimum of 3 holds
    budget.retries = 2;
    expect(budget.allow()).toBe(true);
    budget.retries = 3;
    expect(budget.allow()).toBe(false);
    budget.active = 100; // 20% is 20
    budget.retries = 19;
    expect(budget.allow()).toBe(true);
    budget.retries = 20;
    expect(budget.allow()).toBe(false);
  });

  it("retries only with the body kept, attempts left and room in the budget", () => {
    const budget = new RetryBudget(policy);
    budget.active = 1;
    expect(mayRetry(budget, 1, true)).toBe(true);
    expect(mayRetry(budget, 2, true)).toBe(true);
    expect(mayRetry(budget, 3, true)).toBe(false); // maxAttempts counts the first
    expect(mayRetry(budget, 1, false)).toBe(false); // a streamed body cannot be sent again
    budget.retries = 3;
    expect(mayRetry(budget, 1, true)).toBe(false);
  });

  it("backs off exponentially with jitter between half and one and a half times", () => {
    expect(backoffMs(policy, 1, 0)).toBe(12.5);
    expect(backoffMs(policy, 1, 0.5)).toBe(25);
    expect(backoffMs(policy, 2, 0.5)).toBe(50);
    expect(backoffMs(policy, 3, 0.5)).toBe(100);
    expect(backoffMs(policy, 3, 0.999)).toBeCloseTo(149.9);
    for (let i = 0; i < 100; i++) {
      const ms = backoffMs(policy, 2);
      expect(ms).toBeGreaterThanOrEqual(25);
      expect(ms).toBeLessThan(75);
    }
  });

  it("retries idempotent unary methods only", () => {
    const route: Route = {
      prefix: "/a.B/",
      service: "a.B",
      cluster: "a",
      methods: ["Get", "Put"],
      retryable: new Set(["Get"]),
      getAllowed: new Set(["Get"]),
    };
    expect(isRetryable(route, "/a.B/Get", "grpc")).toBe(true);
    expect(isRetryable(route, "/a.B/Get", "connect")).toBe(true);
    expect(isRetryable(route, "/a.B/Get", "grpc-web")).toBe(true);
    expect(isRetryable(route, "/a.B/Put", "grpc")).toBe(false);
    expect(isRetryable(route, "/a.B/Get", "connect-stream")).toBe(false);
  });

  it("takes UNAVAILABLE, or a plain 503 without a gRPC status, as an answer that may go elsewhere", () => {
    expect(unavailableAnswer("14", 200)).toBe(true);
    expect(unavailableAnswer(undefined, 503)).toBe(true);
    expect(unavailableAnswer("0", 503)).toBe(false);
    expect(unavailableAnswer("5", 200)).toBe(false);
    expect(unavailableAnswer(undefined, 500)).toBe(false);
  });
});
