import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const dbPackage = fileURLToPath(new URL("../package.json", import.meta.url));

// A module hook (node:module register) that refuses PGlite's modules, then the built package.
const child = `
import { register } from "node:module";
register("data:text/javascript," + encodeURIComponent(\`
  export async function resolve(specifier, context, next) {
    const r = await next(specifier, context);
    if (r.url.includes("/@electric-sql/pglite/")) throw new Error("PGlite was loaded: " + r.url);
    return r;
  }\`));
const { createRequire } = await import("node:module");
const db = await import(createRequire(${JSON.stringify(dbPackage)}).resolve("@meshwork/db"));
console.log(typeof db.openDatabase);
`;

describe("@meshwork/db on a Postgres server", () => {
  it("does not load PGlite's modules until a PGlite database is opened", () => {
    // Every service imports this package; PGlite's JavaScript cost each ~50 ms of CPU at start.
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", child], { encoding: "utf8" });
    expect(r.stderr).not.toContain("PGlite was loaded");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("function");
  });
});
