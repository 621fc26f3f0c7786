import { mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { buildNeeded, buildReason, stampFile } from "../start.mjs";

const roots: string[] = [];
afterEach(() => {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
});

/** A repository with one package, meshctl's bundle, and a stamp written at `stampMs`. */
function repo(stampMs: number | undefined): string {
  const root = mkdtempSync(join(tmpdir(), "meshwork-start-"));
  roots.push(root);
  const write = (rel: string, text = "x") => {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), text);
  };
  write("package.json", "{}");
  write("apps/users/src/main.ts");
  write("apps/users/dist/main.js");
  write("apps/users/node_modules/dep/index.js");
  write("tools/meshctl/dist/main.bundle.js");
  write("proto/meshwork/users/v1/users.proto");
  write("patches/postgres+3.4.10.patch");
  const old = new Date(Date.now() - 60_000);
  const age = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) age(path);
      utimesSync(path, old, old);
    }
  };
  age(root);
  for (const f of [
    "package.json",
    "apps/users/src/main.ts",
    "apps/users/dist/main.js",
    "apps/users/node_modules/dep/index.js",
    "proto/meshwork/users/v1/users.proto",
  ])
    utimesSync(join(root, f), old, old);
  if (stampMs !== undefined) {
    mkdirSync(dirname(stampFile(root)), { recursive: true });
    writeFileSync(stampFile(root), `${stampMs}\n`);
  }
  return root;
}

const touch = (root: string, rel: string) => {
  const later = new Date(Date.now() + 5_000);
  utimesSync(join(root, rel), later, later);
};

describe("npm start's build check (tools/meshctl/start.mjs)", () => {
  it("skips the build when nothing changed since the stamp", () => {
    expect(buildNeeded(repo(Date.now()))).toBeUndefined();
  });

  it("builds without a stamp, or without meshctl's bundle", () => {
    expect(buildNeeded(repo(undefined))).toMatch(/no build recorded/);
    const root = repo(Date.now());
    rmSync(join(root, "tools/meshctl/dist/main.bundle.js"));
    expect(buildNeeded(root)).toMatch(/meshctl is not built/);
  });

  it("builds when a source, a proto or a root file is newer than the stamp", () => {
    for (const [rel, said] of [
      ["apps/users/src/main.ts", "apps/users/src/main.ts changed"],
      ["proto/meshwork/users/v1/users.proto", "proto/meshwork/users/v1/users.proto changed"],
      ["package.json", "package.json changed"],
    ] as const) {
      const root = repo(Date.now());
      touch(root, rel);
      expect(buildNeeded(root)).toBe(said);
    }
  });

  it("builds when a patch changes, or a source file is deleted or renamed", () => {
    let root = repo(Date.now());
    touch(root, "patches/postgres+3.4.10.patch");
    expect(buildNeeded(root)).toBe("patches/postgres+3.4.10.patch changed");
    root = repo(Date.now());
    rmSync(join(root, "apps/users/src/main.ts"));
    expect(buildNeeded(root)).toBe("apps/users/src/ changed");
    root = repo(Date.now());
    renameSync(join(root, "apps/users/src/main.ts"), join(root, "apps/users/src/server.ts"));
    expect(buildNeeded(root)).toBe("apps/users/src/ changed");
  });

  it("ignores build outputs and installed dependencies", () => {
    const root = repo(Date.now());
    touch(root, "apps/users/dist/main.js");
    touch(root, "apps/users/node_modules/dep/index.js");
    expect(buildNeeded(root)).toBeUndefined();
  });

  it("MESHWORK_START_BUILD: always builds, never skips even without a stamp, unset checks, anything else is refused", () => {
    const built = repo(Date.now());
    const never = repo(undefined);
    expect(buildReason("always", built)).toBe("asked to");
    expect(buildReason("never", never)).toBeUndefined();
    expect(buildReason(undefined, never)).toMatch(/no build recorded/);
    expect(buildReason("", built)).toBeUndefined();
    expect(() => buildReason("sometimes", built)).toThrow(
      /MESHWORK_START_BUILD must be "always" or "never".*"sometimes"/,
    );
  });
});
