import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { breakingServices, missingMajorBumps, pendingBumps } from "./contract-bumps.js";

describe("a breaking contract change needs a major bump of its service", () => {
  const buf = [
    '{"path":"proto/meshwork/notifications/v1/notifications.proto","start_line":19,"type":"FIELD_NO_DELETE","message":"Previously present field \\"6\\" was deleted."}',
    '{"path":"meshwork/orders/v1/orders.proto","type":"RPC_NO_DELETE","message":"gone"}',
    '{"path":"meshwork/orders/v1/events.proto","type":"FIELD_SAME_TYPE","message":"changed"}',
  ].join("\n");

  it("finds the owning service of each breaking change", () => {
    expect(breakingServices(buf)).toEqual(["notifications", "orders"]);
    expect(breakingServices("")).toEqual([]);
  });

  it("accepts a pending major changeset and names the services that lack one", () => {
    const dir = mkdtempSync(join(tmpdir(), "mw-changeset-"));
    try {
      writeFileSync(join(dir, "README.md"), '---\n"@meshwork/orders": major\n---\nnot a changeset\n');
      writeFileSync(
        join(dir, "brave-cats.md"),
        '---\n"@meshwork/orders": minor\n"@meshwork/users": patch\n---\n\nAdd a field.\n',
      );
      const bumps = pendingBumps(dir);
      expect(missingMajorBumps(breakingServices(buf), bumps)).toEqual(["notifications", "orders"]);
      writeFileSync(
        join(dir, "loud-dogs.md"),
        '---\n"@meshwork/orders": major\n---\n\nRemove CancelOrder.\n',
      );
      expect(pendingBumps(dir).get("@meshwork/orders")).toBe("major");
      expect(missingMajorBumps(breakingServices(buf), pendingBumps(dir))).toEqual(["notifications"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
