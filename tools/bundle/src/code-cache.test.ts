import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const launcher = fileURLToPath(new URL("./code-cache.cjs", import.meta.url));
const { cacheFileOf } = createRequire(import.meta.url)(launcher) as {
  cacheFileOf: (dir: string, path: string, source: string) => string;
};

/**
 * Runs `bundle` through the launcher's `runWithCodeCache` with the cache in `cache`, the cache
 * written at once (delay 0; the bundle keeps the process up 100 ms): what the bundle printed and
 * what the launcher said of the cache.
 */
function run(bundle: string, cache: string): { out: string; state: string } {
  const script = [
    `const { runWithCodeCache } = require(${JSON.stringify(launcher)});`,
    `const state = runWithCodeCache(${JSON.stringify(bundle)}, ${JSON.stringify(cache)}, 0);`,
    "setTimeout(() => console.log('cache:' + state), 100);",
  ].join("\n");
  const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  const lines = r.stdout.trim().split("\n");
  return { out: lines.slice(0, -1).join("\n"), state: (lines.at(-1) ?? "").replace("cache:", "") };
}

/** A CommonJS "bundle" whose answer is `word` (same length for every word of the same length). */
const bundleText = (word: string) =>
  `function answer() { return "${word}"; }\nconsole.log(answer(), __filename === ${JSON.stringify("X")}.replace("X", __filename), typeof require);\n`;

describe("runWithCodeCache (the bundles' launcher)", () => {
  const dirs: string[] = [];
  const fresh = () => {
    const dir = mkdtempSync(join(tmpdir(), "meshwork-code-cache-"));
    dirs.push(dir);
    return { bundle: join(dir, "main.bundle.cjs"), cache: join(dir, "cache") };
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("writes a cache on the first run and V8 accepts it on the next", () => {
    const { bundle, cache } = fresh();
    writeFileSync(bundle, bundleText("first"));
    expect(run(bundle, cache)).toEqual({ out: "first true function", state: "none" });
    expect(readdirSync(cache)).toHaveLength(1);
    expect(run(bundle, cache)).toEqual({ out: "first true function", state: "used" });
  });

  it("never runs a cache made from another text, even of the same length (V8 checks only the length)", () => {
    const { bundle, cache } = fresh();
    writeFileSync(bundle, bundleText("apple"));
    run(bundle, cache);
    const old = readFileSync(cacheFileOf(cache, bundle, bundleText("apple")));
    writeFileSync(bundle, bundleText("melon")); // a rebuild: same length, other code
    expect(run(bundle, cache)).toEqual({ out: "melon true function", state: "none" });
    // The old cache is gone (replaced by the new text's) ...
    expect(readdirSync(cache)).toEqual([
      cacheFileOf(cache, bundle, bundleText("melon")).slice(cache.length + 1),
    ]);
    // ... and this is why the file name holds the text's hash: under the new text's name, V8
    // accepts the old cache and runs the old code.
    writeFileSync(cacheFileOf(cache, bundle, bundleText("melon")), old);
    expect(run(bundle, cache)).toEqual({ out: "apple true function", state: "used" });
  });

  it("runs the bundle when its cache is corrupt, and writes a good one", () => {
    const { bundle, cache } = fresh();
    writeFileSync(bundle, bundleText("pear"));
    run(bundle, cache);
    const file = cacheFileOf(cache, bundle, bundleText("pear"));
    const bytes = readFileSync(file);
    bytes.fill(7, 0, 64); // header and checksum area overwritten
    writeFileSync(file, bytes);
    expect(run(bundle, cache)).toEqual({ out: "pear true function", state: "rejected" });
    expect(run(bundle, cache)).toEqual({ out: "pear true function", state: "used" });
    writeFileSync(file, "not a cache");
    expect(run(bundle, cache)).toEqual({ out: "pear true function", state: "rejected" });
  });

  it("runs uncached, writing nothing, without a cache directory", () => {
    const { bundle } = fresh();
    writeFileSync(bundle, bundleText("plum"));
    expect(run(bundle, "")).toEqual({ out: "plum true function", state: "off" });
  });
});
