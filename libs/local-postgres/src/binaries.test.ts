import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { binariesFor } from "./binaries.js";

describe("binaries the server's OS user can run", () => {
  const root = mkdtempSync(join(tmpdir(), "mw-pgbin-"));
  chmodSync(root, 0o755);
  afterAll(() => {
    chmodSync(join(root, "closed"), 0o755);
    rmSync(root, { recursive: true, force: true });
  });
  // A stranger: owns nothing here, so only the "other" permission bits count for it.
  const stranger = { uid: 4_000_001, gid: 4_000_001 };

  function fakePackage(dir: string) {
    const native = join(dir, "pkg", "native");
    mkdirSync(join(native, "bin"), { recursive: true });
    mkdirSync(join(native, "lib"), { recursive: true });
    writeFileSync(join(dir, "pkg", "package.json"), JSON.stringify({ version: "18.4.0-test" }));
    for (const b of ["postgres", "initdb", "pg_ctl"]) writeFileSync(join(native, "bin", b), b);
    writeFileSync(join(native, "lib", "libpq.so.5"), "lib");
    return {
      postgres: join(native, "bin", "postgres"),
      initdb: join(native, "bin", "initdb"),
      pg_ctl: join(native, "bin", "pg_ctl"),
    };
  }

  it("uses them in place when every parent is open to the user", () => {
    const open = join(root, "open");
    mkdirSync(open, { mode: 0o755 });
    const bins = fakePackage(open);
    const said: string[] = [];
    expect(binariesFor(bins, stranger, (l) => said.push(l), join(root, "copies-open"))).toEqual(bins);
    expect(said).toEqual([]);
  });

  it("copies them where the user can reach them when a parent is closed (a checkout under /root)", () => {
    const closed = join(root, "closed");
    mkdirSync(closed, { mode: 0o755 });
    const bins = fakePackage(closed);
    chmodSync(closed, 0o700);
    const copies = join(root, "copies");
    mkdirSync(copies, { mode: 0o755 });
    const said: string[] = [];
    const usable = binariesFor(bins, stranger, (l) => said.push(l), copies);
    const target = join(copies, "meshwork-postgres-18.4.0-test");
    expect(usable.postgres).toBe(join(target, "bin", "postgres"));
    expect(usable.initdb).toBe(join(target, "bin", "initdb"));
    expect(readFileSync(usable.postgres, "utf8")).toBe("postgres");
    expect(existsSync(join(target, "lib", "libpq.so.5"))).toBe(true);
    expect(said).toEqual([
      `the server's OS user cannot reach the binaries under ${join(closed, "pkg", "native")}: using a copy in ${target}`,
    ]);
  });
});
