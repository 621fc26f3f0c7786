import { describe, expect, it } from "vitest";
import { InvalidOrderError, MAX_AMOUNT_MINOR, orderTotal } from "./order.js";

describe("orderTotal", () => {
  it("is exact up to 2^53 - 1 minor units", () => {
    expect(orderTotal([{ quantity: 1, unitPriceMinor: MAX_AMOUNT_MINOR }])).toBe(Number.MAX_SAFE_INTEGER);
    expect(
      orderTotal([
        { quantity: 3, unitPriceMinor: 3_002_399_751_580_330n },
        { quantity: 1, unitPriceMinor: 1n },
      ]),
    ).toBe(Number.MAX_SAFE_INTEGER);
  });

  it.each([
    [
      "one unit too many",
      [{ quantity: 2, unitPriceMinor: MAX_AMOUNT_MINOR / 2n + 1n }],
      /^total: .* 9007199254740992 minor units/,
    ],
    [
      "a total beyond int64",
      [{ quantity: 1000, unitPriceMinor: MAX_AMOUNT_MINOR }],
      /^total: .* 9007199254740991000 minor/,
    ],
    [
      "a unit price beyond the largest amount",
      [{ quantity: 1, unitPriceMinor: MAX_AMOUNT_MINOR + 2n }],
      /^items\[0\]\.unit_price: /,
    ],
  ])("refuses %s, naming the field", (_what, items, message) => {
    expect(() => orderTotal(items)).toThrow(InvalidOrderError);
    expect(() => orderTotal(items)).toThrow(message);
  });
});
