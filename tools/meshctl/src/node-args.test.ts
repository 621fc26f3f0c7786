import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import {
  bundleOf,
  inputsRecordOf,
  meshNodeArgs,
  SEMI_SPACE_MB,
  serviceEntry,
  serviceNodeOptions,
} from "./node-args.js";
import { findServices } from "./services.js";

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
    expect(meshNodeArgs("--max_semi_space_size=8")).toEqual(["--enable-source-maps"]);
    expect(meshNodeArgs("--max-old-space-size=512")).toContain(`--max-semi-space-size=${SEMI_SPACE_MB}`);
  });

  it("adds a CPU profile of every process when MESHWORK_CPU_PROFILE_DIR names a directory", () => {
    expect(meshNodeArgs("", true, "/tmp/profiles")).toEqual([
      `--max-semi-space-size=${SEMI_SPACE_MB}`,
      "--cpu-prof",
      "--cpu-prof-dir=/tmp/profiles",
    ]);
    expect(meshNodeArgs("", true, "")).toEqual([`--max-semi-space-size=${SEMI_SPACE_MB}`]);
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

describe("serviceNodeOptions", () => {
  it("puts a service's own Node options before the environment's, which win (as in its image)", () => {
    expect(serviceNodeOptions(undefined, undefined)).toBe("");
    expect(serviceNodeOptions(undefined, "--inspect")).toBe("--inspect");
    expect(serviceNodeOptions("--max-semi-space-size=4", "")).toBe("--max-semi-space-size=4");
    expect(serviceNodeOptions("--max-semi-space-size=4", "--max-semi-space-size=16")).toBe(
      "--max-semi-space-size=4 --max-semi-space-size=16",
    );
    // A service that sets its young generation gets no second one from meshctl's default.
    expect(meshNodeArgs(serviceNodeOptions("--max-semi-space-size=2", undefined), true)).toEqual([]);
  });

  it("starts the gateway with the options its package.json gives it", () => {
    const gateway = findServices(fileURLToPath(new URL("../../../", import.meta.url))).find(
      (s) => s.kind === "gateway",
    );
    expect(gateway?.nodeOptions).toMatch(/--max-semi-space-size=\d+/);
  });
});

describe("serviceEntry", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-entry-"));
  mkdirSync(join(dir, "dist"));
  const main = join(dir, "dist/main.js");
  const lib = join(dir, "dist/lib.js");
  const bundle = join(dir, "dist/main.bundle.js");
  const chunk = join(dir, "dist/main.bundle.chunk-A1.js");
  const sha = (text: string) => createHash("sha256").update(text).digest("hex");
  /**
   * A bundle, its chunk and the record meshwork-bundle writes beside them: built from main.js and
   * lib.js as they are now.
   */
  const bundled = () => {
    writeFileSync(bundle, 'import "./main.bundle.chunk-A1.js";');
    writeFileSync(chunk, "export {};");
    writeFileSync(
      inputsRecordOf(bundle),
      JSON.stringify({
        inputs: { "main.js": sha(readFileSync(main, "utf8")), "lib.js": sha(readFileSync(lib, "utf8")) },
        outputs: {
          "main.bundle.js": sha(readFileSync(bundle, "utf8")),
          "main.bundle.chunk-A1.js": sha(readFileSync(chunk, "utf8")),
        },
      }),
    );
  };
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs the entry point when there is no bundle", async () => {
    writeFileSync(main, "import './lib.js';");
    writeFileSync(lib, "export const a = 1;");
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    expect(bundleOf(main)).toBe(bundle);
  });

  it("runs the bundle while its inputs are as it recorded them, whatever the file times", async () => {
    bundled();
    // As a build restored from turbo's cache leaves them: the entry point written after its bundle.
    const now = Date.now() / 1000;
    utimesSync(bundle, now - 60, now - 60);
    utimesSync(main, now, now);
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: bundle, bundled: true });
    expect(await serviceEntry(dir, "dist/main.js", { MESHWORK_BUNDLE: "0" })).toEqual({
      file: main,
      bundled: false,
    });
  });

  it("runs the CommonJS twin's launcher (code cache) when the build wrote one, unless MESHWORK_CODE_CACHE=0", async () => {
    bundled();
    const cjs = join(dir, "dist/main.bundle.cjs");
    const launcher = join(dir, "dist/main.bundle.start.cjs");
    writeFileSync(cjs, "module.exports = {};");
    writeFileSync(launcher, "require('./main.bundle.cjs');");
    const record = JSON.parse(readFileSync(inputsRecordOf(bundle), "utf8")) as {
      outputs: Record<string, string>;
    };
    record.outputs["main.bundle.cjs"] = sha(readFileSync(cjs, "utf8"));
    record.outputs["main.bundle.start.cjs"] = sha(readFileSync(launcher, "utf8"));
    writeFileSync(inputsRecordOf(bundle), JSON.stringify(record));
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: launcher, bundled: true });
    expect(await serviceEntry(dir, "dist/main.js", { MESHWORK_CODE_CACHE: "0" })).toEqual({
      file: bundle,
      bundled: true,
    });
    writeFileSync(cjs, "module.exports = { changed: true };"); // not as its build wrote it
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    rmSync(cjs);
    rmSync(launcher);
  });

  it("ignores a bundle when a file it was built from changed (tsc ran since, here a lib's)", async () => {
    bundled();
    writeFileSync(lib, "export const a = 2;");
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });

  it("ignores a bundle when a file it was built from is gone", async () => {
    writeFileSync(lib, "export const a = 1;");
    bundled();
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: bundle, bundled: true });
    rmSync(lib);
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });

  it("ignores a bundle when a chunk its build wrote is gone or changed (a failed rebuild, a rebuild under way)", async () => {
    writeFileSync(lib, "export const a = 1;");
    bundled();
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: bundle, bundled: true });
    rmSync(chunk);
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    bundled();
    writeFileSync(chunk, "export const other = 1;");
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    bundled();
    writeFileSync(bundle, 'import "./main.bundle.chunk-B2.js";'); // rewritten, its record not yet
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });

  it("ignores a bundle whose record names no outputs (written before chunks: they cannot be checked)", async () => {
    writeFileSync(lib, "export const a = 1;");
    bundled();
    const record = JSON.parse(readFileSync(inputsRecordOf(bundle), "utf8")) as Record<string, unknown>;
    writeFileSync(inputsRecordOf(bundle), JSON.stringify({ inputs: record.inputs }));
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });

  it("ignores a bundle without its record (built before the record existed) or with a broken one", async () => {
    writeFileSync(lib, "export const a = 1;");
    bundled();
    writeFileSync(inputsRecordOf(bundle), "{");
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
    rmSync(inputsRecordOf(bundle));
    expect(await serviceEntry(dir, "dist/main.js", {})).toEqual({ file: main, bundled: false });
  });
});
