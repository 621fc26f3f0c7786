import { describe, expect, it } from "vitest";
import { eventViolations } from "./invariants.js";
import { planFaults } from "./plan.js";
import { createRng } from "./rng.js";

const opts = { orders: 40, faults: 6, replicas: { orders: 2, notifications: 2 }, ackWaitMs: 2_000 };

describe("the fault plan", () => {
  it("is the same for the same seed, meets every kind in a short run, and pauses past the ack wait", () => {
    const a = planFaults(createRng(7), opts);
    expect(planFaults(createRng(7), opts)).toEqual(a);
    expect(planFaults(createRng(8), opts)).not.toEqual(a);
    expect(new Set(a.map((p) => p.fault.kind)).size).toBe(5);
    const some = planFaults(createRng(7), { ...opts, kinds: ["kill", "restart-nats"] });
    expect(new Set(some.map((p) => p.fault.kind))).toEqual(new Set(["kill", "restart-nats"]));
    for (const p of a) {
      expect(p.atOrder).toBeGreaterThanOrEqual(1);
      expect(p.atOrder).toBeLessThanOrEqual(36);
      if (p.fault.kind === "pause-consumer") expect(p.fault.pauseMs).toBeGreaterThan(2_000);
    }
  });

  it("restarts Postgres as often as --postgres-share asks, after one round of every kind", () => {
    const many = { ...opts, orders: 2_000, faults: 100 };
    const pg = (share?: number) =>
      planFaults(createRng(9), { ...many, ...(share === undefined ? {} : { postgresShare: share }) }).filter(
        (p) => p.fault.kind === "restart-postgres",
      ).length;
    expect(pg(1)).toBe(96); // 5 kinds once, then 95 restarts
    expect(pg(0.5)).toBeGreaterThan(35);
    expect(pg()).toBeLessThan(30);
  });
});

describe("the event invariants", () => {
  const order = "0190aaaa-bbbb-7ccc-8ddd-eeeeffff0000";
  const base = {
    orders: [{ id: order, userId: "u1", status: "confirmed" as const }],
    acknowledged: new Map([["k1", order]]),
    keysSent: new Map([["u1", 1]]),
    users: ["u1"],
    notifications: [
      { userId: "u1", kind: "user.registered", body: "welcome", eventId: "e0" },
      { userId: "u1", kind: "order.confirmed", body: `Your order ${order} is confirmed`, eventId: "e1" },
    ],
  };
  it("hold for a clean run and name each violation", () => {
    expect(eventViolations(base)).toEqual([]);
    expect(
      eventViolations({
        ...base,
        notifications: [...base.notifications, { ...base.notifications[1]!, eventId: "e2" }],
      }),
    ).toEqual([`order ${order}: 2 notifications (order.confirmed, order.confirmed)`]);
    expect(eventViolations({ ...base, notifications: base.notifications.slice(0, 1) })).toEqual([
      `order ${order} is confirmed, but its user was never notified`,
    ]);
    expect(eventViolations({ ...base, keysSent: new Map() })).toEqual([
      "user u1 has 1 orders, but sent 0 idempotency keys",
    ]);
    expect(eventViolations({ ...base, orders: [] })).toContain(
      `order ${order} (key k1) was acknowledged to its client but does not exist`,
    );
  });
});
