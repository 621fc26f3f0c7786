"use strict";
/**
 * The launcher `meshwork-bundle` copies beside a service's CommonJS bundle (`dist/main.bundle.start.cjs`
 * next to `dist/main.bundle.cjs`): it runs the bundle through `vm.Script` with a V8 code cache, so
 * a process that starts again does not compile the bundle again. Node 20 caches nothing itself
 * (`module.enableCompileCache` is Node >= 22.1) and offers no code cache for ES modules.
 *
 * The cache lives in `MESHWORK_CODE_CACHE_DIR` (meshctl gives `<home>/code-cache`); without it
 * the bundle runs uncached. A cache is used only for the exact bundle it was made from: its file
 * name holds the SHA-256 of the bundle's text (V8 checks only the text's length, Node's version
 * and V8's flags: a rebuilt bundle of the same length would run the old code), and V8 rejecting
 * it (another Node, other flags, a corrupt file) only costs the compile. The cache is written
 * once, `MESHWORK_CODE_CACHE_DELAY_MS` (3000) after the bundle ran, when the start-up code has
 * been compiled (V8 compiles functions lazily; the cache holds those compiled by then), whenever
 * no cache was accepted; other caches of the same bundle path are removed then.
 *
 * Measured (cached `npm start -- --ports auto` until "the mesh is up", CPU of every process of
 * the start then; 5 alternated pairs, medians): at load average 6-9, ES module bundles up in
 * 7.00 s with 7.01 s of CPU, these launchers with their caches 5.98 s with 5.89 s (every pair
 * lower: CPU B/A 0.82-0.86, median 0.83); at load 20-30, 6.13 -> 5.42 s of CPU (B/A median 0.88).
 */
const { createHash } = require("node:crypto");
const { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } = require("node:fs");
const Module = require("node:module");
const { dirname, join, resolve } = require("node:path");
const vm = require("node:vm");

/**
 * Runs the CommonJS file `file` as the main program, with the code cache of `cacheDir` (none
 * when empty). Returns what happened to the cache: "off" (no directory), "none" (no cache for
 * this text yet), "used", or "rejected" (V8 refused it; a new one is written).
 */
function runWithCodeCache(file, cacheDir, delayMs = 3000) {
  const path = resolve(file);
  const source = readFileSync(path, "utf8");
  const cacheFile = cacheDir ? cacheFileOf(cacheDir, path, source) : undefined;
  let cachedData;
  if (cacheFile) {
    try {
      cachedData = readFileSync(cacheFile);
    } catch {
      // none yet
    }
  }
  const script = new vm.Script(Module.wrap(source), {
    filename: path,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const state = !cacheFile ? "off" : !cachedData ? "none" : script.cachedDataRejected ? "rejected" : "used";
  const mod = new Module(path, null);
  mod.filename = path;
  mod.paths = Module._nodeModulePaths(dirname(path));
  if (cacheFile && state !== "used") setTimeout(() => writeCache(cacheFile, script), delayMs).unref();
  script.runInThisContext()(mod.exports, Module.createRequire(path), mod, path, dirname(path));
  mod.loaded = true;
  return state;
}

/** `<dir>/<hash of the bundle's path>-<hash of its text, Node's version and arch>.v8cache`. */
function cacheFileOf(cacheDir, path, source) {
  const where = createHash("sha256").update(path).digest("hex").slice(0, 16);
  const what = createHash("sha256")
    .update(source)
    .update(`\0${process.version}\0${process.arch}`)
    .digest("hex")
    .slice(0, 32);
  return join(cacheDir, `${where}-${what}.v8cache`);
}

/** Writes the script's code cache (whole or not at all) and removes older caches of the same bundle path. */
function writeCache(cacheFile, script) {
  try {
    const dir = dirname(cacheFile);
    mkdirSync(dir, { recursive: true });
    const tmp = `${cacheFile}.${process.pid}.tmp`;
    writeFileSync(tmp, script.createCachedData());
    renameSync(tmp, cacheFile);
    const prefix = `${cacheFile.slice(dir.length + 1).split("-")[0]}-`;
    for (const f of readdirSync(dir))
      if (f.startsWith(prefix) && join(dir, f) !== cacheFile && f.endsWith(".v8cache"))
        rmSync(join(dir, f), { force: true });
  } catch {
    // a cache is an optimisation: a read-only or full disk only means the next start compiles
  }
}

module.exports = { runWithCodeCache, cacheFileOf };

if (require.main === module) {
  const bundle = __filename.replace(/\.start\.cjs$/, ".cjs"); // main.bundle.start.cjs -> main.bundle.cjs
  const delay = Number(process.env.MESHWORK_CODE_CACHE_DELAY_MS || 3000);
  runWithCodeCache(bundle, process.env.MESHWORK_CODE_CACHE_DIR || "", delay);
}
