import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const apps = readdirSync(`${root}apps`, { withFileTypes: true })
  .filter((d) => d.isDirectory())
  .map((d) => d.name)
  .filter((name) => {
    try {
      readFileSync(`${root}apps/${name}/package.json`);
      return true;
    } catch {
      return false;
    }
  });

/** Packages that exist for tests (and the harnesses built on them); none runs in production. */
const TEST_ONLY = [
  /^@meshwork\/(testing|e2e|bench)$/,
  /^vitest$/,
  /^@vitest\//,
  /^fast-check$/,
  /^@fast-check\//,
];

/** What a service's `dependencies` may not name: another service, or test code. */
function forbidden(app: string, dependencies: Record<string, string>): string[] {
  const services = new Set(apps.filter((a) => a !== app).map((a) => `@meshwork/${a}`));
  return Object.keys(dependencies).filter((d) => services.has(d) || TEST_ONLY.some((t) => t.test(d)));
}

describe("no service depends on another service or on test code at run time", () => {
  it("finds the services", () => {
    expect(apps).toEqual(expect.arrayContaining(["orders", "inventory", "payments", "users"]));
  });

  it.each(apps)("apps/%s/package.json", (app) => {
    const pkg = JSON.parse(readFileSync(`${root}apps/${app}/package.json`, "utf8")) as {
      dependencies?: Record<string, string>;
    };
    expect(forbidden(app, pkg.dependencies ?? {})).toEqual([]);
  });

  it("the rule itself refuses another service, the test library and a test runner", () => {
    expect(
      forbidden("orders", {
        "@meshwork/gateway": "0.1.0",
        "@meshwork/orders": "0.1.0",
        "@meshwork/testing": "0.1.0",
        "@meshwork/db": "0.1.0",
        vitest: "4",
      }),
    ).toEqual(["@meshwork/gateway", "@meshwork/testing", "vitest"]);
  });
});
