import { describe, expect, it } from "vitest";
import { OrderWatch, type StatusChange } from "./order-watch.js";

describe("OrderWatch", () => {
  it("gives each watcher of an order every status in order, a resync after a lost LISTEN, and ends on abort", async () => {
    const watch = new OrderWatch();
    const ac = new AbortController();
    const a = watch.subscribe("o1", ac.signal);
    const other = watch.subscribe("o2");
    watch.deliver("o1:pending");
    watch.deliver("o2:confirmed");
    watch.deliver("o1:stock_reserved");
    watch.resync();
    const seen: StatusChange[] = [];
    const reading = (async () => {
      for await (const s of a) seen.push(s);
    })();
    await new Promise((r) => setImmediate(r));
    watch.deliver("o1:confirmed");
    await new Promise((r) => setImmediate(r));
    ac.abort();
    await reading;
    expect(seen).toEqual(["pending", "stock_reserved", "resync", "confirmed"]);
    const it2 = other[Symbol.asyncIterator]();
    expect(await it2.next()).toEqual({ value: "confirmed", done: false });
    expect(await it2.next()).toEqual({ value: "resync", done: false });
    other.close();
    expect(await it2.next()).toEqual({ value: undefined, done: true });
    // Nothing is kept for orders nobody watches any more.
    watch.deliver("o1:cancelled");
  });
});
