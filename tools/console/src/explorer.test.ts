import { createRegistry, type JsonValue } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { meshworkFiles } from "@meshwork/contracts";
import { PlaceOrderRequestSchema } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { SetFaultsRequestSchema } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { describe, expect, it } from "vitest";
import { codeName, fieldOfViolation, locateJsonError, template } from "./explorer.js";

const registry = createRegistry(...meshworkFiles);

describe("the explorer's request handling", () => {
  it("builds a template with every field at a typical value, nested messages included", () => {
    const t = template(PlaceOrderRequestSchema, 0) as {
      idempotencyKey: string;
      items: Array<{
        productId: string;
        quantity: number;
        unitPrice: { amountMinor: number; currency: string };
      }>;
    };
    expect(Object.keys(t)).toEqual(["idempotencyKey", "items"]);
    expect(t.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    expect(t.items).toHaveLength(1);
    expect(t.items[0]).toMatchObject({ quantity: 1, unitPrice: { amountMinor: 0, currency: "EUR" } });
    expect(t.items[0]?.productId).toMatch(/^[0-9a-f-]{36}$/);
    expect(template(SetFaultsRequestSchema, 0)).toEqual({
      faults: { failureRate: 0, addedLatencyMs: 0, hardDown: false, declineAboveMinor: 0 },
    });
  });

  it("names the JSON path of the field a request gets wrong", () => {
    const at = (json: JsonValue) => locateJsonError(PlaceOrderRequestSchema, json, registry);
    expect(at({ items: 5 })).toBe("items");
    expect(at({ items: [{ quantity: 1 }, { quantity: "two" }] })).toBe("items[1].quantity");
    expect(at({ items: [{ unitPrice: { currency: 7 } }] })).toBe("items[0].unitPrice.currency");
    expect(at({ idempotencyKey: "k", itemz: [] })).toBe("itemz");
    expect(at({ idempotency_key: "proto names are accepted" })).toBeUndefined();
  });

  it("reads the field from a validation message, and names codes as the Connect protocol does", () => {
    expect(fieldOfViolation("items[0].quantity: value must be greater than 0 [int64.gt]")).toBe(
      "items[0].quantity",
    );
    expect(fieldOfViolation("missing bearer token")).toBe("");
    expect(codeName(undefined)).toBe("ok");
    expect(codeName(Code.InvalidArgument)).toBe("invalid_argument");
    expect(codeName(Code.DeadlineExceeded)).toBe("deadline_exceeded");
  });
});
