import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { findServices } from "../services.js";
import { InvalidServiceSpecError, validateServiceSpec } from "./names.js";
import { eventSources } from "./new-service.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const manifests = findServices(root);
const check = (name: string, more: { port?: string; consumes?: string; publishesEvents?: boolean } = {}) =>
  validateServiceSpec(root, manifests, { name, eventSources: eventSources(), ...more });
const refusal = (f: () => unknown): string => {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidServiceSpecError);
    return (err as Error).message;
  }
  throw new Error("expected a refusal");
};

describe("meshctl new service: names, ports and event sources", () => {
  it("takes a free name and picks the next free service port", () => {
    const spec = check("reviews", { publishesEvents: true, consumes: "users, orders" });
    const highest = Math.max(...manifests.filter((m) => m.kind === "service").map((m) => m.port));
    expect(spec).toMatchObject({
      name: "reviews",
      pascal: "Reviews",
      port: highest + 1,
      publishesEvents: true,
      consumes: ["users", "orders"],
    });
  });

  it("refuses a name a service, a proto package or the mesh's infrastructure already uses", () => {
    expect(refusal(() => check("users"))).toMatch(/"users" is taken: .*apps\/users already declares it/);
    expect(refusal(() => check("common"))).toMatch(/reserved/);
    expect(refusal(() => check("gateway"))).toMatch(/reserved/);
    expect(refusal(() => check("postgres"))).toMatch(/reserved/);
  });

  it("refuses names that are not identifiers everywhere the name goes", () => {
    for (const bad of ["Reviews", "my-service", "my_service", "1st", "r", "a".repeat(31), "re views", ""]) {
      expect(
        refusal(() => check(bad)),
        bad,
      ).toMatch(/not a valid identifier/);
    }
  });

  it("refuses a port another process of the mesh uses, or no port at all", () => {
    const inventory = manifests.find((m) => m.name === "inventory");
    expect(refusal(() => check("reviews", { port: String(inventory?.port) }))).toBe(
      `--port ${inventory?.port} clashes with inventory, which uses it already`,
    );
    expect(refusal(() => check("reviews", { port: "9901" }))).toMatch(
      /clashes with gateway's admin listener/,
    );
    expect(refusal(() => check("reviews", { port: "4222" }))).toMatch(/clashes with NATS/);
    expect(refusal(() => check("reviews", { port: "80" }))).toMatch(/between 1024 and 65535/);
    expect(refusal(() => check("reviews", { port: "50x" }))).toMatch(/between 1024 and 65535/);
    expect(check("reviews", { port: "50100" }).port).toBe(50100);
  });

  it("consumes only services that publish events", () => {
    expect(eventSources()).toEqual(expect.arrayContaining(["users", "payments", "orders"]));
    expect(refusal(() => check("reviews", { consumes: "inventory" }))).toMatch(
      /--consumes-events inventory: no service publishes events under that name/,
    );
    expect(refusal(() => check("reviews", { consumes: "reviews" }))).toMatch(/its own events/);
  });

  it("the CLI exits 2 with the reason", () => {
    const r = spawnSync(
      process.execPath,
      [join(root, "tools/meshctl/dist/main.js"), "new", "service", "orders"],
      {
        encoding: "utf8",
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^meshctl new service: service name "orders" is taken/);
    const usage = spawnSync(
      process.execPath,
      [join(root, "tools/meshctl/dist/main.js"), "new", "thing", "x"],
      {
        encoding: "utf8",
      },
    );
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/usage: meshctl new service NAME/);
  });
});
