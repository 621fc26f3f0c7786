import { create } from "@bufbuild/protobuf";
import { ProductChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { describe, expect, it } from "vitest";
import { legacyChanges, mergeCapture, type SyncMark } from "./legacy-sync.js";
import type { products } from "./schema.js";

const id = "7d3c1c52-2d7e-4d53-8a43-0d8e1f0c9a11";
// Inventory's row: stock 15 at version 6 after its own +5 (published for legacy at version 6).
const row: typeof products.$inferSelect = {
  id,
  sku: "LEG-1",
  name: "Mesh name",
  priceMinor: 900,
  currency: "EUR",
  onHand: 15,
  reserved: 2,
  received: 15,
  createdAt: new Date(0),
  version: 6,
  legacySynced: true,
};
const mark: SyncMark = {
  productId: id,
  sequence: 10,
  meshNameVersion: 5,
  meshStockVersion: 6,
  legacyStockDelta: 10,
  legacyHeldBack: 0,
  appliedAt: new Date(0),
};

const capture = (fields: {
  seenNameVersion?: bigint;
  seenStockVersion?: bigint;
  legacyStockDelta?: bigint;
  onHand?: bigint;
}) =>
  create(ProductChangedSchema, {
    productId: id,
    sequence: 11n,
    sku: "LEG-1",
    name: "Legacy name",
    price: { amountMinor: 900n, currency: "EUR" },
    onHand: 9n,
    ...fields,
  });

describe("mergeCapture (a legacy capture against inventory's newer writes)", () => {
  it("a capture that had seen every mesh write: its name, legacy's sale counted, nothing sent back", () => {
    // Legacy applied the mesh's 15 (version 6), then sold 1: 14 on hand, its sum 10 -> 9.
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 9n, onHand: 14n }),
      row,
      mark,
    );
    expect(m.state).toMatchObject({ name: "Legacy name", onHand: 14 });
    expect(m).toMatchObject({ stockBack: false, legacyStockDelta: 9 });
  });

  it("a count legacy holds wrongly goes back, even with no change of its own", () => {
    // Legacy's 9 has seen every mesh write, but its sum has not moved since the last capture.
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 10n, onHand: 9n }),
      row,
      mark,
    );
    expect(m.state.onHand).toBe(15);
    expect(m.stockBack).toBe(true);
  });

  it("merges a concurrent one: the mesh's name, legacy's sale added to the mesh's count, sent back", () => {
    const m = mergeCapture(
      capture({ seenNameVersion: 4n, seenStockVersion: 4n, legacyStockDelta: 9n }),
      row,
      mark,
    );
    expect(m.state).toMatchObject({ name: "Mesh name", onHand: 14 });
    expect(m).toMatchObject({ stockBack: true, legacyStockDelta: 9 });
  });

  it("a later capture of the same concurrent run adds only what legacy changed since the last one", () => {
    // Two legacy sales (running sum 10 -> 9 -> 7); the first was merged (mark 9, row 14).
    const after = { ...row, onHand: 14, version: 7 };
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: 7n, onHand: 7n }),
      after,
      { ...mark, legacyStockDelta: 9, meshStockVersion: 7 },
    );
    expect(m.state.onHand).toBe(12);
    expect(m.stockBack).toBe(true);
  });

  it("a concurrent rename with no stock change leaves the count alone and sends nothing back", () => {
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: 10n }),
      row,
      mark,
    );
    expect(m.state).toMatchObject({ name: "Legacy name", onHand: 15 });
    expect(m.stockBack).toBe(false);
  });

  it("never drops units below what reservations hold; legacy gets the count less what is held back", () => {
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: -10n }),
      row,
      mark,
    );
    // 15 - 20 = -5: units stop at the 2 reserved, 7 of legacy's sales are held back in them.
    expect(m.state.onHand).toBe(2);
    expect(m).toMatchObject({ legacyStockDelta: -10, heldBack: 7 });
    // Legacy will hold the mesh's pending 15: it gets 2 with 7 held back, so it writes 0.
    expect(m.stockBack).toBe(true);
    const whole = mergeCapture(capture({ seenNameVersion: 5n, seenStockVersion: 6n, onHand: 1n }), row, mark);
    expect(whole.state.onHand).toBe(2);
    expect(whole).toMatchObject({ heldBack: 1, stockBack: false });
  });

  it("legacy keeps its lower count when the floor moved the count: the floored units are not sold again", () => {
    // Review of issue 19: start 5, inventory reserves 5 (published, legacy applied it), legacy
    // sells 5. Sent back, legacy would show 5 again and sell them again (15 sold of 5).
    const reserved = { ...row, onHand: 5, reserved: 5, received: 5, version: 2 };
    const marks = { ...mark, meshStockVersion: 2, legacyStockDelta: 0 };
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 2n, legacyStockDelta: -5n, onHand: 0n }),
      reserved,
      marks,
    );
    expect(m.state.onHand).toBe(5);
    expect(m).toMatchObject({ stockBack: false, heldBack: 5, legacyStockDelta: -5 });
    expect(legacyChanges(reserved, m).stock).toBe(false);
  });

  it("records what the floor held back, so this side's next stock write takes it out (no capture waited for)", () => {
    // Start 5, reserve 5, legacy sells 3: inventory stays at 5, 3 held back; legacy keeps its 2.
    const reserved = { ...row, onHand: 5, reserved: 5, received: 5, version: 2 };
    const marks = { ...mark, meshStockVersion: 2, legacyStockDelta: 0 };
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 2n, legacyStockDelta: -3n, onHand: 2n }),
      reserved,
      marks,
    );
    expect(m.state.onHand).toBe(5);
    expect(m).toMatchObject({ heldBack: 3, stockBack: false, legacyStockDelta: -3 });
    // A later capture counts the recorded held-back part: legacy sells 1 more after the release
    // (which took the 3 out: 2 on hand, nothing held back) -> 1, not 5 - 1.
    const next = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 3n, legacyStockDelta: -4n, onHand: 1n }),
      { ...reserved, onHand: 2, reserved: 0, version: 3 },
      { ...marks, meshStockVersion: 3, legacyStockDelta: -3, legacyHeldBack: 0 },
    );
    expect(next.state.onHand).toBe(1);
    // Still held back (no stock write in between): the capture takes it out once units are free.
    const held = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 2n, legacyStockDelta: -3n, onHand: 2n }),
      { ...reserved, reserved: 1 },
      { ...marks, legacyStockDelta: -3, legacyHeldBack: 3 },
    );
    expect(held.state.onHand).toBe(2);
    expect(held.heldBack).toBe(0);
  });

  it("a backfill snapshot re-baselines stock to legacy's count when nothing is pending", () => {
    // Legacy's count was changed with its trigger off (a change the capture missed): 9 in legacy,
    // 15 here, every sale counted (sum 10 = the recorded one) and every mesh write applied.
    const snap = (fields: Parameters<typeof capture>[0]) => ({ ...capture(fields), snapshot: true });
    const m = mergeCapture(
      snap({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 10n, onHand: 9n }),
      row,
      mark,
    );
    expect(m.state.onHand).toBe(9);
    expect(m).toMatchObject({ stockBack: false, legacyStockDelta: 10, heldBack: 0 });
    // Not below the reserved units: legacy keeps its count, the rest held back.
    const low = mergeCapture(
      snap({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 10n, onHand: 1n }),
      row,
      mark,
    );
    expect(low.state.onHand).toBe(2);
    expect(low).toMatchObject({ stockBack: false, heldBack: 1 });
    // A mesh write legacy has not applied yet, or a legacy change not counted yet: merged by the sum.
    const pending = mergeCapture(
      snap({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: 10n, onHand: 9n }),
      row,
      mark,
    );
    expect(pending.state.onHand).toBe(15);
    const uncounted = mergeCapture(
      snap({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 9n, onHand: 8n }),
      row,
      mark,
    );
    expect(uncounted.state.onHand).toBe(14);
  });

  it("a backfill snapshot keeps the oversold units legacy's count (stopped at 0) cannot show", () => {
    // Inventory committed 5 of 5 while legacy sold the same 5: 0 here, 5 held back, legacy at 0.
    // A quiet backfill then reads legacy's 0: the 5 oversold units must still come out of the
    // next restock (review finding: taken whole, a +10 restock gave 10 on both sides, not 5).
    const sold: typeof row = { ...row, onHand: 0, reserved: 0, received: 0 };
    const oversold: SyncMark = { ...mark, legacyHeldBack: 5 };
    const snap = {
      ...capture({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: 10n, onHand: 0n }),
      snapshot: true,
    };
    const m = mergeCapture(snap, sold, oversold);
    expect(m.state.onHand).toBe(0);
    expect(m).toMatchObject({ stockBack: false, heldBack: 5 });
    // Legacy at 3 with 1 held back beyond its count (on hand 2 here, 3 held back): 3 - 1 counted.
    const partly = mergeCapture(
      { ...snap, onHand: 3n },
      { ...sold, onHand: 2, received: 2 },
      { ...mark, legacyHeldBack: 3 },
    );
    expect(partly.state.onHand).toBe(2);
    expect(partly.heldBack).toBe(0);
  });

  it("takes a concurrent capture whole when no baseline of legacy's sum is recorded yet, and records its sum", () => {
    // Legacy's step 7 ran before inventory's migration: its sum (4) already holds changes the old
    // inventory took whole. Added to the mesh's count (15 + 4) they would count twice.
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: 4n, onHand: 13n }),
      row,
      { ...mark, legacyStockDelta: null },
    );
    expect(m.state.onHand).toBe(13);
    expect(m).toMatchObject({ stockBack: true, legacyStockDelta: 4 });
    // The next capture of the run merges against that baseline: legacy sold 1 more.
    const next = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 4n, legacyStockDelta: 3n, onHand: 12n }),
      { ...row, onHand: 13, version: 7 },
      { ...mark, legacyStockDelta: 4, meshStockVersion: 7 },
    );
    expect(next.state.onHand).toBe(12);
    expect(next.legacyStockDelta).toBe(3);
  });

  it("a later capture overtaking an earlier concurrent one keeps the earlier one's sale", () => {
    // Legacy at 10, inventory at 10 (baseline: legacy's sum 0). Legacy sells 1: capture 11
    // (sum -1, 9 on hand) is taken before inventory's +5 (its version 7) reaches legacy. The
    // reverse sync then writes 15 over legacy's 9 (legacy's sale is gone from legacy's count, only
    // its sum still holds it), and legacy sells 2 more: capture 12 (sum -3, 13 on hand) has seen
    // version 7. Delivered 12 first, 11 is then stale (a lower sequence): inventory must come to
    // 10 + 5 - 1 - 2 = 12, and so must legacy.
    const at = { ...row, onHand: 15, reserved: 0, version: 7 };
    const marks = { ...mark, sequence: 10, meshStockVersion: 7, legacyStockDelta: 0 };
    const m = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 7n, legacyStockDelta: -3n, onHand: 13n }),
      at,
      marks,
    );
    expect(m.state.onHand).toBe(12);
    expect(m).toMatchObject({ stockBack: true, legacyStockDelta: -3 });
    // In order, the same two captures come to the same count.
    const first = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 6n, legacyStockDelta: -1n, onHand: 9n }),
      at,
      marks,
    );
    expect(first.state.onHand).toBe(14);
    const second = mergeCapture(
      capture({ seenNameVersion: 5n, seenStockVersion: 7n, legacyStockDelta: -3n, onHand: 13n }),
      { ...at, onHand: first.state.onHand, version: 8 },
      { ...marks, meshStockVersion: 8, legacyStockDelta: first.legacyStockDelta },
    );
    expect(second.state.onHand).toBe(12);
  });

  it("takes a capture made before the fields existed whole, as before", () => {
    const m = mergeCapture(capture({}), row, mark);
    expect(m.state).toMatchObject({ name: "Legacy name", onHand: 9 });
    expect(m.stockBack).toBe(false);
    // ...and it leaves no baseline where none was.
    expect(mergeCapture(capture({}), row, { ...mark, legacyStockDelta: null }).legacyStockDelta).toBeNull();
  });
});
