import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bundleOf, meshNodeArgs, SEMI_SPACE_MB, serviceEntry } from "./node-args.js";

describe("meshNodeArgs", () => {
  it("starts a mesh process with source maps and a small young generation", () => {
    expect(meshNodeArgs("")).toEqual(["--enable-source-maps", `--max-semi-space-size=${SEMI_SPACE_MB}`]);
  });

  it("starts a bundle without source maps (Node 20 would parse its map at start-up)", () => {
    expect(meshNodeArgs("", true)).toEqual([`--max-semi-space-size=${SEMI_SPACE_MB}`]);
  });

  it("leaves the young generation to NODE_OPTIONS when it sets one", () => {
    expect(meshNodeArgs("--max-semi-space-size=32")).toEqual(["--enable-source-maps"]);
    expect(meshNodeArgs("--inspect --max-semi-space-size 8")).toEqual(["--enable-source-maps"]);
    expect(meshNodeArgs("--max-old-space-size=512")).toContain(`--max-semi-space-size=${SEMI_SPACE_MB}`);
  });

  it("gives a process started with them a young generation of that size (V8 reads the flag)", () => {
    const script =
      "const v8=require('v8');const s=v8.getHeapSpaceStatistics().find(x=>x.space_name==='new_space');" +
      "const keep=[];for(let i=0;i<200000;i++)keep.push({i,s:'x'.repeat(20)});" +
      "const after=v8.getHeapSpaceStatistics().find(x=>x.space_name==='new_space');console.log(after.space_size)";
    const run = (args: string[]) =>
      Number(
        spawnSync(process.execPath, [...args, "-e", script], { encoding: "utf8", env: {} }).stdout.trim(),
      );
    const small = run(meshNodeArgs(""));
    const usual = run(["--enable-source-maps"]);
    // New space holds two semi-spaces plus V8's own pages: at most a few times the semi-space.
    expect(small).toBeLessThanOrEqual(3 * SEMI_SPACE_MB * 1024 * 1024);
    expect(usual).toBeGreaterThan(small);
  });
});

describe("serviceEntry", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-entry-"));
  mkdirSync(join(dir, "dist"));
  const main = join(dir, "dist/main.js");
  const bundle = join(dir, "dist/main.bundle.js");
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the entry point when there is no bundle", () => {
    writeFileSync(main, "");
    expect(serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    expect(bundleOf(main)).toBe(bundle);
  });

  it("runs the bundle beside it when it is as new as the entry point", () => {
    writeFileSync(bundle, "");
    const now = new Date();
    utimesSync(main, now, now);
    utimesSync(bundle, now, now);
    expect(serviceEntry(dir, "dist/main.js", {})).toEqual({ file: bundle, bundled: true });
    expect(serviceEntry(dir, "dist/main.js", { MESHWORK_BUNDLE: "0" })).toEqual({
      file: main,
      bundled: false,
    });
  });

  it("ignores a bundle older than the entry point (tsc ran since)", () => {
    const now = Date.now() / 1000;
    utimesSync(bundle, now - 60, now - 60);
    utimesSync(main, now, now);
    expect(serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });
});
