import { describe, expect, it } from "vitest";
import { servicePermissions } from "./nats-auth.js";

const mesh = { bucket: "meshwork_registry", namespace: "" };

describe("servicePermissions: who may declare a stream", () => {
  it("lets legacy consume ORDERS and INVENTORY but never create or update them (their owners set their replicas)", () => {
    const allow = servicePermissions("legacy", mesh, ["inventory", "orders"]).publish.allow;
    for (const stream of ["ORDERS", "INVENTORY"]) {
      expect(allow).toContain(`$JS.API.STREAM.INFO.${stream}`);
      expect(allow).toContain(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`);
      expect(allow).toContain(`$JS.ACK.${stream}.>`);
      expect(allow).not.toContain(`$JS.API.STREAM.CREATE.${stream}`);
      expect(allow).not.toContain(`$JS.API.STREAM.UPDATE.${stream}`);
    }
    // Its own streams it declares.
    for (const stream of ["LEGACY", "DLQ_LEGACY"]) {
      expect(allow).toContain(`$JS.API.STREAM.CREATE.${stream}`);
      expect(allow).toContain(`$JS.API.STREAM.UPDATE.${stream}`);
    }
  });

  it("lets only the owner declare its stream: no consumer creates or updates another's (issue 19, h19c)", () => {
    expect(servicePermissions("orders", mesh).publish.allow).toContain("$JS.API.STREAM.UPDATE.ORDERS");
    const notifications = servicePermissions("notifications", mesh).publish.allow;
    const inventory = servicePermissions("inventory", mesh, ["legacy"]).publish.allow;
    const orders = servicePermissions("orders", mesh, ["legacy"]).publish.allow;
    for (const [allow, streams] of [
      [notifications, ["USERS", "PAYMENTS", "ORDERS"]],
      [inventory, ["LEGACY"]],
      [orders, ["LEGACY"]],
    ] as const) {
      for (const stream of streams) {
        expect(allow).toContain(`$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`);
        expect(allow).not.toContain(`$JS.API.STREAM.CREATE.${stream}`);
        expect(allow).not.toContain(`$JS.API.STREAM.UPDATE.${stream}`);
      }
    }
    // Each still declares its own stream and dead letters.
    expect(notifications).toContain("$JS.API.STREAM.CREATE.DLQ_NOTIFICATIONS");
    expect(inventory).toContain("$JS.API.STREAM.CREATE.INVENTORY");
  });

  it("gives LEGACY_USERS (legacy's captured users, with password hashes) consumers to users only", () => {
    const consumerRights = (allow: string[]) =>
      allow.filter((a) => /^\$JS\.(API\.CONSUMER|API\.STREAM\.MSG|API\.DIRECT|ACK)\b.*LEGACY_USERS/.test(a));
    const legacy = servicePermissions("legacy", mesh, ["inventory", "orders"]).publish.allow;
    expect(legacy).toContain("meshwork.legacy_users.>");
    expect(legacy).toContain("$JS.API.STREAM.CREATE.LEGACY_USERS");
    expect(consumerRights(legacy)).toEqual([]);
    expect(consumerRights(servicePermissions("inventory", mesh, ["legacy"]).publish.allow)).toEqual([]);
    const users = servicePermissions("users", mesh, ["legacy_users", "legacy"]).publish.allow;
    expect(users).toContain("$JS.API.CONSUMER.DURABLE.CREATE.LEGACY_USERS.>");
    expect(users).toContain("$JS.API.CONSUMER.DELETE.LEGACY.users-legacy-sync");
    // Users consumes them without declaring them: legacy alone sets their max_age and replicas.
    expect(users).not.toContain("$JS.API.STREAM.CREATE.LEGACY_USERS");
    expect(users).not.toContain("$JS.API.STREAM.UPDATE.LEGACY");
  });
});
