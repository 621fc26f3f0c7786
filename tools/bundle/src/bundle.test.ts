import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const bin = fileURLToPath(new URL("./bundle.mjs", import.meta.url));

/**
 * A package the shape of a service: an ES module entry point in dist/ that reads a file beside
 * its package (as a service finds its migrations), and a CommonJS dependency that knows its own
 * file and loads another dependency only when asked (as libs/telemetry loads the OTel SDK).
 */
function service(): string {
  const dir = mkdtempSync(join(tmpdir(), "meshwork-bundle-"));
  const file = (path: string, text: string) => {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  file("package.json", JSON.stringify({ type: "module" }));
  file("data.txt", "beside the package");
  // Each dependency's own package.json makes it CommonJS (the service's says "module").
  file("node_modules/lazy-dep/package.json", JSON.stringify({ name: "lazy-dep", main: "index.js" }));
  file("node_modules/cjs-dep/package.json", JSON.stringify({ name: "cjs-dep", main: "index.js" }));
  file(
    "node_modules/lazy-dep/index.js",
    "globalThis.lazyLoaded = true;\nmodule.exports = { loaded: true };\n",
  );
  file(
    "node_modules/cjs-dep/index.js",
    'exports.where = () => __filename;\nexports.load = () => require("lazy-dep");\n',
  );
  file(
    "dist/main.js",
    [
      'import { readFileSync } from "node:fs";',
      'import { load, where } from "cjs-dep";',
      'const data = readFileSync(new URL("../data.txt", import.meta.url), "utf8");',
      "const before = globalThis.lazyLoaded ?? false;",
      "const lazy = load().loaded;",
      "console.log(JSON.stringify({ data, before, lazy, where: where() }));",
    ].join("\n"),
  );
  return dir;
}

/**
 * A service whose entry point reaches a driver only through `import()`, and the driver imports
 * an external module (as libs/db opens PGlite: drizzle's PGlite driver, bundled, imports PGlite,
 * external). Bundle it with `--external ext-dep`.
 */
function lazyService(): string {
  const dir = service();
  const file = (path: string, text: string) => {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  };
  file(
    "node_modules/ext-dep/package.json",
    JSON.stringify({ name: "ext-dep", type: "module", main: "index.js" }),
  );
  file("node_modules/ext-dep/index.js", "globalThis.extLoaded = true;\nexport const value = 42;\n");
  file("dist/driver.js", 'import { value } from "ext-dep";\nexport const driver = () => value;\n');
  file(
    "dist/main.js",
    [
      "const before = globalThis.extLoaded ?? false;",
      'const { driver } = await import("./driver.js");',
      "console.log(JSON.stringify({ before, value: driver(), after: globalThis.extLoaded }));",
    ].join("\n"),
  );
  return dir;
}

/** The chunk files beside a service's bundle. */
function chunks(dir: string): string[] {
  return readdirSync(join(dir, "dist"))
    .filter((f) => f.startsWith("main.bundle.chunk-"))
    .sort();
}

function bundle(dir: string, ...args: string[]) {
  return spawnSync(process.execPath, [bin, ...args], { cwd: dir, encoding: "utf8" });
}

describe("meshwork-bundle", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it("writes dist/main.bundle.js, which runs with no node_modules, finds files beside its package and loads lazily", () => {
    const dir = service();
    dirs.push(dir);
    const built = bundle(dir);
    expect(built.status, built.stderr).toBe(0);
    expect(built.stdout).toMatch(/dist\/main\.js -> dist\/main\.bundle\.js: \d+ modules/);
    rmSync(join(dir, "node_modules"), { recursive: true }); // everything it needs is inside
    const run = spawnSync(process.execPath, [join(dir, "dist/main.bundle.js")], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    const out = JSON.parse(run.stdout) as { data: string; before: boolean; lazy: boolean; where: string };
    expect(out.data).toBe("beside the package");
    expect(out.before).toBe(false); // the CommonJS module ran only when required
    expect(out.lazy).toBe(true);
    expect(out.where).toBe(join(dir, "dist/main.bundle.js")); // __filename is the bundle's
  });

  it("writes a CommonJS twin and its launcher, which run like the bundle (code cache), top-level await included", () => {
    const dir = service();
    dirs.push(dir);
    writeFileSync(
      join(dir, "dist/main.js"),
      `${readFileSync(join(dir, "dist/main.js"), "utf8")}\nawait new Promise((r) => setTimeout(r, 10));\nconsole.log("after await");\n`,
    );
    expect(bundle(dir).status).toBe(0);
    rmSync(join(dir, "node_modules"), { recursive: true });
    const run = spawnSync(process.execPath, [join(dir, "dist/main.bundle.start.cjs")], {
      encoding: "utf8",
      env: { ...process.env, MESHWORK_CODE_CACHE_DIR: join(dir, "cache"), MESHWORK_CODE_CACHE_DELAY_MS: "0" },
    });
    expect(run.status, run.stderr).toBe(0);
    const [json = "", after] = run.stdout.trim().split("\n");
    const out = JSON.parse(json) as { data: string; before: boolean; lazy: boolean; where: string };
    expect(out).toEqual({
      data: "beside the package",
      before: false,
      lazy: true,
      where: join(dir, "dist/main.bundle.cjs"),
    });
    expect(after).toBe("after await");
  });

  it("gives the twin's entry point's failure after an await as a top-level await's: an uncaught error, exit code 1", () => {
    const dir = service();
    dirs.push(dir);
    writeFileSync(join(dir, "dist/main.js"), 'await Promise.resolve();\nthrow new Error("no config");\n');
    expect(bundle(dir).status).toBe(0);
    const run = spawnSync(process.execPath, [join(dir, "dist/main.bundle.start.cjs")], { encoding: "utf8" });
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("Error: no config");
  });

  it("writes no twin for an entry point with an export (it could not wrap it), and removes an earlier one", () => {
    const dir = service();
    dirs.push(dir);
    expect(bundle(dir).status).toBe(0);
    writeFileSync(join(dir, "dist/main.js"), 'console.log("x");\nexport const a = 1;\n');
    expect(bundle(dir).status).toBe(0);
    const files = readdirSync(join(dir, "dist"));
    expect(files).toContain("main.bundle.js");
    expect(files).not.toContain("main.bundle.cjs");
    expect(files).not.toContain("main.bundle.start.cjs");
  });

  it("records the SHA-256 of each of the repository's own files it holds, not node_modules' (meshctl's freshness check)", () => {
    const dir = service();
    dirs.push(dir);
    expect(bundle(dir).status).toBe(0);
    const record = JSON.parse(readFileSync(join(dir, "dist/main.bundle.js.inputs.json"), "utf8")) as {
      inputs: Record<string, string>;
    };
    const main = readFileSync(join(dir, "dist/main.js"));
    expect(record.inputs).toEqual({ "main.js": createHash("sha256").update(main).digest("hex") });
  });

  it("records every file it wrote with its SHA-256 (meshctl runs the bundle only while all of them are there as written)", () => {
    const dir = lazyService();
    dirs.push(dir);
    expect(bundle(dir, "--external", "ext-dep").status).toBe(0);
    const record = JSON.parse(readFileSync(join(dir, "dist/main.bundle.js.inputs.json"), "utf8")) as {
      outputs: Record<string, string>;
    };
    const written = readdirSync(join(dir, "dist")).filter((f) =>
      /^main\.bundle(\.chunk-.*\.js|\.js|\.cjs|\.start\.cjs)$/.test(f),
    );
    expect(written).toHaveLength(4); // the bundle, its chunk, the CommonJS twin and its launcher
    expect(Object.keys(record.outputs).sort()).toEqual(written.sort());
    for (const f of written)
      expect(record.outputs[f]).toBe(
        createHash("sha256")
          .update(readFileSync(join(dir, "dist", f)))
          .digest("hex"),
      );
  });

  it("keeps the previous build's chunks when a rebuild fails (the bundle it leaves still runs)", () => {
    const dir = lazyService();
    dirs.push(dir);
    expect(bundle(dir, "--external", "ext-dep").status).toBe(0);
    const chunksBefore = chunks(dir);
    expect(chunksBefore).toHaveLength(1);
    writeFileSync(
      join(dir, "dist/driver.js"),
      'import { value } from "./missing.js";\nexport const driver = () => value;\n',
    );
    const failed = bundle(dir, "--external", "ext-dep");
    expect(failed.status).not.toBe(0);
    expect(chunks(dir)).toEqual(chunksBefore);
    const run = spawnSync(process.execPath, [join(dir, "dist/main.bundle.js")], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ before: false, value: 42, after: true });
  });

  it("holds the OTLP/gRPC exporters (sdk-node loads them at start) and leaves @grpc/grpc-js, which they load lazily, outside", () => {
    const dir = service();
    dirs.push(dir);
    const file = (path: string, text: string) => {
      mkdirSync(join(dir, path, ".."), { recursive: true });
      writeFileSync(join(dir, path), text);
    };
    const exporter = "node_modules/@opentelemetry/exporter-trace-otlp-grpc";
    file(
      `${exporter}/package.json`,
      JSON.stringify({ name: "@opentelemetry/exporter-trace-otlp-grpc", main: "index.js" }),
    );
    file(
      `${exporter}/index.js`,
      'exports.kind = "grpc exporter";\nexports.connect = () => require("@grpc/grpc-js");\n',
    );
    file(
      "node_modules/@grpc/grpc-js/package.json",
      JSON.stringify({ name: "@grpc/grpc-js", main: "index.js" }),
    );
    file("node_modules/@grpc/grpc-js/index.js", "exports.loaded = true;\n");
    file(
      "dist/main.js",
      'import { kind, connect } from "@opentelemetry/exporter-trace-otlp-grpc";\nconsole.log(JSON.stringify({ kind, grpc: process.argv[2] ? connect().loaded : false }));\n',
    );
    expect(bundle(dir).status).toBe(0);
    rmSync(join(dir, "node_modules/@opentelemetry"), { recursive: true }); // the exporter is inside
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [join(dir, "dist/main.bundle.js"), ...args], { encoding: "utf8" });
    const started = run();
    expect(started.status, started.stderr).toBe(0);
    expect(JSON.parse(started.stdout)).toEqual({ kind: "grpc exporter", grpc: false });
    // grpc-js is loaded from node_modules when an export over gRPC asks for it, not before.
    expect(readFileSync(join(dir, "dist/main.bundle.js"), "utf8")).not.toContain("exports.loaded = true");
    expect(JSON.parse(run("grpc").stdout)).toEqual({ kind: "grpc exporter", grpc: true });
  });

  it("puts code reached only by import() in a chunk beside the bundle, so the external modules it imports load with it, not at start", () => {
    const dir = lazyService();
    dirs.push(dir);
    const built = bundle(dir, "--external", "ext-dep");
    expect(built.status, built.stderr).toBe(0);
    const run = spawnSync(process.execPath, [join(dir, "dist/main.bundle.js")], { encoding: "utf8" });
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toEqual({ before: false, value: 42, after: true });
    expect(chunks(dir)).toHaveLength(1);
    // A rebuild replaces the chunks of the build before, not adds to them.
    writeFileSync(
      join(dir, "dist/driver.js"),
      'import { value } from "ext-dep";\nexport const driver = () => value + 0;\n',
    );
    expect(bundle(dir, "--external", "ext-dep").status).toBe(0);
    expect(chunks(dir)).toHaveLength(1);
  });

  it("leaves a package named by --external outside the bundle", () => {
    const dir = service();
    dirs.push(dir);
    const built = bundle(dir, "--external", "cjs-dep");
    expect(built.status, built.stderr).toBe(0);
    const text = readFileSync(join(dir, "dist/main.bundle.js"), "utf8");
    expect(text).not.toContain("lazyLoaded = true");
    expect(text).toMatch(/from "cjs-dep"/);
  });

  it("fails, naming the entry point, when there is none", () => {
    const dir = mkdtempSync(join(tmpdir(), "meshwork-bundle-"));
    dirs.push(dir);
    const built = bundle(dir, "dist/nothing.js");
    expect(built.status).not.toBe(0);
    expect(built.stderr).toContain("dist/nothing.js");
  });
});
