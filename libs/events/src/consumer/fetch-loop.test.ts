import type { JsMsg } from "@nats-io/jetstream";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MessageQueue } from "./fetch-loop.js";

// The queue only holds messages: any object stands for one.
const msg = (n: number) => ({ seq: n }) as unknown as JsMsg;
const msgs = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => msg(from + i));

/** One turn of the event loop: lets a pending `take` settle if it can. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A `take` whose settlement can be looked at without awaiting it. */
function watch(p: Promise<JsMsg[] | undefined>) {
  const state: { done: boolean; value?: JsMsg[] } = { done: false };
  const settled = p.then((value) => {
    state.done = true;
    state.value = value;
    return value;
  });
  return { state, settled };
}

/** Resolves with `p`'s value, or fails once `ms` have passed (a bound, not a timing claim). */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not settled within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe("MessageQueue", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("without a linger takes what is queued at once (the previous behaviour)", async () => {
    const q = new MessageQueue({ lingerMs: 0, minBatch: 256 });
    q.put(msg(1));
    expect(await within(2_000, q.take(256))).toEqual([msg(1)]);
    const next = watch(q.take(256));
    await turn();
    expect(next.state.done).toBe(false); // empty: waits for a message
    q.put(msg(2));
    q.put(msg(3));
    expect(await within(2_000, next.settled)).toEqual(msgs(2, 3)); // what was queued when it woke
    const byDefault = new MessageQueue();
    byDefault.put(msg(4));
    expect(await within(2_000, byDefault.take(256))).toEqual([msg(4)]);
  });

  it("coalesces messages that trickle in during the linger into one batch", async () => {
    const q = new MessageQueue({ lingerMs: 60_000, minBatch: 5 });
    q.put(msg(1));
    const batch = watch(q.take(256));
    for (let n = 2; n <= 4; n++) {
      await turn();
      expect(batch.state.done).toBe(false);
      q.put(msg(n));
    }
    await turn();
    expect(batch.state.done).toBe(false);
    q.put(msg(5)); // minBatch reached: the batch goes at once, long before the linger ends
    expect(await within(5_000, batch.settled)).toEqual(msgs(1, 5));
  });

  it("applies a small batch once its oldest message has lingered lingerMs, with what came meanwhile", async () => {
    const lingerMs = 50;
    const q = new MessageQueue({ lingerMs, minBatch: 256 });
    const start = performance.now();
    q.put(msg(1));
    const batch = watch(q.take(256));
    await turn();
    q.put(msg(2));
    const taken = await within(10_000, batch.settled);
    expect(taken).toEqual(msgs(1, 2));
    expect(performance.now() - start).toBeGreaterThanOrEqual(lingerMs - 2); // timers round to ms
  });

  it("does not wait when the queue holds a full batch, or max messages", async () => {
    const q = new MessageQueue({ lingerMs: 60_000, minBatch: 4 });
    for (const m of msgs(1, 6)) q.put(m);
    expect(await within(5_000, q.take(4))).toEqual(msgs(1, 4));
    // 2 left, fewer than minBatch, but as many as this take may carry.
    expect(await within(5_000, q.take(2))).toEqual(msgs(5, 6));
  });

  it("returns at once, without lingering, when closed during a linger, then ends", async () => {
    const q = new MessageQueue({ lingerMs: 60_000, minBatch: 256 });
    q.put(msg(1));
    const batch = watch(q.take(256));
    await turn();
    expect(batch.state.done).toBe(false);
    q.close();
    expect(await within(5_000, batch.settled)).toEqual([msg(1)]);
    expect(await within(5_000, q.take(256))).toBeUndefined();
  });

  it("drains a closed queue without lingering", async () => {
    const q = new MessageQueue({ lingerMs: 60_000, minBatch: 256 });
    q.put(msg(1));
    q.close();
    expect(await within(5_000, q.take(256))).toEqual([msg(1)]);
    expect(await within(5_000, q.take(256))).toBeUndefined();
  });

  it("counts the linger from the oldest message's arrival: messages that waited out an apply go at once", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "performance"] });
    const q = new MessageQueue({ lingerMs: 5, minBatch: 256 });
    q.put(msg(1));
    vi.advanceTimersByTime(3); // the applier was busy for 3 ms
    q.put(msg(2));
    const first = watch(q.take(256));
    await vi.advanceTimersByTimeAsync(1);
    expect(first.state.done).toBe(false); // 1 ms of msg 1's linger left
    await vi.advanceTimersByTimeAsync(1);
    expect(first.state.value).toEqual(msgs(1, 2));

    q.put(msg(3));
    vi.advanceTimersByTime(10); // longer than the linger: no wait at all
    const second = watch(q.take(256));
    await Promise.resolve();
    await Promise.resolve();
    expect(second.state.value).toEqual([msg(3)]);
  });

  it("counts the linger of messages a full batch left behind from their own arrival, not the batch's", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setImmediate", "performance"] });
    const q = new MessageQueue({ lingerMs: 10, minBatch: 4 });
    q.put(msg(1));
    vi.advanceTimersByTime(20); // msg 1 waited out an apply
    for (const m of msgs(2, 5)) q.put(m);
    expect(await q.take(4)).toEqual(msgs(1, 4)); // a full batch: at once
    // msg 5 arrived just now: it lingers its own 10 ms for company.
    const rest = watch(q.take(4));
    await vi.advanceTimersByTimeAsync(5);
    expect(rest.state.done).toBe(false);
    q.put(msg(6));
    await vi.advanceTimersByTimeAsync(4);
    expect(rest.state.done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(rest.state.value).toEqual(msgs(5, 6));
  });
});
