import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { sourceCommit } from "./build-commit.js";

describe("sourceCommit", () => {
  const dir = mkdtempSync(join(tmpdir(), "mw-commit-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const git = (...args: string[]) =>
    spawnSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], {
      cwd: dir,
      encoding: "utf8",
    }).stdout.trim();

  it("is the HEAD commit, -dirty with a change or an untracked file, and nothing outside a repository", async () => {
    expect(await sourceCommit(dir)).toBeUndefined();
    git("init", "-q");
    expect(await sourceCommit(dir)).toBeUndefined(); // no commit yet
    writeFileSync(join(dir, "a.txt"), "a\n");
    git("add", "a.txt");
    git("commit", "-qm", "first");
    const head = git("rev-parse", "--short=12", "HEAD");
    expect(head).toMatch(/^[0-9a-f]{12}$/);
    expect(await sourceCommit(dir)).toBe(head);
    writeFileSync(join(dir, "b.txt"), "new\n");
    expect(await sourceCommit(dir)).toBe(`${head}-dirty`);
  });
});
