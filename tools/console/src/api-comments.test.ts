import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ApiComments, extractApiComments } from "./api-comments.js";
import { describeServices } from "./explorer.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const buf = fileURLToPath(new URL("../../../node_modules/.bin/buf", import.meta.url));

describe("the contracts' comments in the explorer (reflection carries none)", () => {
  const dir = mkdtempSync(join(tmpdir(), "mw-comments-"));
  let comments: ApiComments;

  beforeAll(() => {
    // What the build does: the repository's protos, compiled with their source info.
    const image = join(dir, "contracts.binpb");
    const run = spawnSync(buf, ["build", "--as-file-descriptor-set", "-o", image], { cwd: root });
    expect(run.status, String(run.stderr)).toBe(0);
    comments = extractApiComments(readFileSync(image));
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("reads the comment of every kind of declaration, by full name", () => {
    expect(comments["meshwork.orders.v1.OrderService"]).toMatch(
      /^OrderService takes orders and sees them through/,
    );
    expect(comments["meshwork.orders.v1.OrderService.PlaceOrder"]).toMatch(
      /^PlaceOrder creates an order in PENDING and starts its saga\. The idempotency key makes a\s+retry/,
    );
    expect(comments["meshwork.orders.v1.PlaceOrderRequest.idempotency_key"]).toMatch(/^Chosen by the client/);
    expect(comments["meshwork.orders.v1.OrderStatus.ORDER_STATUS_PENDING"]).toBe(
      "Placed; the saga is running.",
    );
    expect(comments["meshwork.orders.v1.SagaState"]).toBe("Where a placement saga is.");
    // Only the mesh's own contracts: not the vendored third-party ones.
    expect(Object.keys(comments).every((k) => k.startsWith("meshwork."))).toBe(true);
  });

  it("puts them on the methods, messages and fields the explorer describes", () => {
    const api = describeServices([OrderService], comments);
    const placeOrder = api.services[0]?.methods.find((m) => m.name === "PlaceOrder");
    expect(placeOrder?.comment).toMatch(/^PlaceOrder creates an order/);
    const request = api.schemas.find((s) => s.fullName === "meshwork.orders.v1.PlaceOrderRequest");
    expect(request?.fields.find((f) => f.name === "idempotency_key")?.comment).toMatch(
      /^Chosen by the client/,
    );
    const item = api.schemas.find((s) => s.fullName === "meshwork.orders.v1.OrderItem");
    expect(item?.fields.find((f) => f.name === "unit_price")?.comment).toMatch(/^Set by the service/);
    // Without comments (a method this build does not know): empty, nothing else changes.
    const bare = describeServices([OrderService], {});
    expect(bare.services[0]?.methods.every((m) => m.comment === "")).toBe(true);
    expect(bare.services[0]?.methods.map((m) => m.access)).toEqual(
      api.services[0]?.methods.map((m) => m.access),
    );
  });
});
