import { AsyncResource, executionAsyncId } from "node:async_hooks";
import { describe, expect, it } from "vitest";
import { installLeanAsyncBind } from "./async-bind.js";

/** What a bound function does and shows, for Node's bind and the lean one alike. */
function behaviour() {
  const resource = new AsyncResource("T");
  const seen: unknown[] = [];
  function f(this: unknown, a: number, b: number) {
    seen.push(executionAsyncId(), this, a, b);
    return a + b;
  }
  const bound = resource.bind(f);
  const self = { s: 1 };
  const result = bound.call(self, 1, 2);
  const bindWith = resource.bind as unknown as (fn: typeof f, thisArg: unknown) => typeof f;
  const withThis = bindWith.call(resource, f, self);
  const result2 = withThis(3, 4);
  const descriptor = Object.getOwnPropertyDescriptor(bound, "asyncResource");
  return {
    result,
    result2,
    seen: seen.map((v) => (v === self ? "self" : v === resource.asyncId() ? "resource" : v)),
    length: [bound.length, withThis.length],
    enumerable: descriptor?.enumerable,
    configurable: descriptor?.configurable,
    keys: Object.keys(bound),
    bound,
    resource,
    f,
  };
}

describe("installLeanAsyncBind", () => {
  it("leaves another Node major's bind alone (it copies Node 20's)", () => {
    const own = AsyncResource.prototype.bind;
    expect(installLeanAsyncBind("22.11.0")).toBe(false);
    expect(AsyncResource.prototype.bind).toBe(own);
  });

  it("binds as Node's bind does, without a deprecate() wrapper per bound function", () => {
    const before = behaviour();
    const wrapped = Object.getOwnPropertyDescriptor(before.bound, "asyncResource")?.get;
    // Node 20's accessor is a deprecate() wrapper: its prototype is the function it wraps.
    expect(Object.getPrototypeOf(wrapped)).not.toBe(Function.prototype);

    installLeanAsyncBind();
    const after = behaviour();
    const { bound: b1, resource: r1, f: f1, ...was } = before;
    const { bound, resource, f, ...now } = after;
    expect(now).toEqual(was);
    expect(now.seen).toEqual(["resource", "self", 1, 2, "resource", "self", 3, 4]);
    const lean = Object.getOwnPropertyDescriptor(bound, "asyncResource")?.get;
    expect(Object.getPrototypeOf(lean)).toBe(Function.prototype);
    expect(() => resource.bind(42 as unknown as () => void)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARG_TYPE" }),
    );
  });

  it("keeps the deprecated asyncResource accessor: reads, replaces, warns DEP0172 once", async () => {
    installLeanAsyncBind();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on("warning", onWarning);
    try {
      const resource = new AsyncResource("T");
      const bound = resource.bind(() => executionAsyncId());
      expect((bound as unknown as { asyncResource: AsyncResource }).asyncResource).toBe(resource);
      const other = new AsyncResource("U");
      (bound as unknown as { asyncResource: AsyncResource }).asyncResource = other;
      expect((bound as unknown as { asyncResource: AsyncResource }).asyncResource).toBe(other);
      // Where it runs does not change (as in Node).
      expect(bound()).toBe(resource.asyncId());
      await new Promise((r) => setImmediate(r));
      const dep = warnings.filter((w) => (w as Error & { code?: string }).code === "DEP0172");
      expect(dep.length).toBeLessThanOrEqual(1);
    } finally {
      process.off("warning", onWarning);
    }
  });
});
