import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { meshLegacyTokenSecret } from "./identity-keys.js";

describe("meshLegacyTokenSecret", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("makes one secret per mesh home, owner-only, long enough for both loaders, and keeps it", () => {
    const home = join(mkdtempSync(join(tmpdir(), "mw-legacy-secret-")), "home");
    dirs.push(join(home, ".."));
    const first = meshLegacyTokenSecret(home);
    // Both apps/legacy and apps/users require at least 32 characters.
    expect(first.length).toBeGreaterThanOrEqual(32);
    expect(statSync(join(home, "legacy-token-secret")).mode & 0o777).toBe(0o600);
    expect(meshLegacyTokenSecret(home)).toBe(first);
    const other = mkdtempSync(join(tmpdir(), "mw-legacy-secret-"));
    dirs.push(other);
    expect(meshLegacyTokenSecret(other)).not.toBe(first);
  });
});
