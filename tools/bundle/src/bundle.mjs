#!/usr/bin/env node
/**
 * `meshwork-bundle [--external PKG]... [entry] [outfile]`: bundles a service's built entry point (default
 * `dist/main.js`) and everything it imports into an ES module (default `dist/main.bundle.js`) and
 * the chunks beside it (`main.bundle.chunk-*.js`), which `meshctl up` starts instead of the entry
 * point when they are there. The bundle and its chunks are one unit: the bundle imports some
 * chunks statically at start (code it shares with import()-only code: drizzle's core,
 * @opentelemetry/api, ...), so it does not run alone; copy or deploy them together.
 *
 * Why: a service's start-up is mostly Node loading modules. The users service loads about 940 of
 * them (its own, the libs', OpenTelemetry, Connect, drizzle, postgres.js, NATS), one file lookup,
 * read and compile each. Measured here (users on the mesh's embedded Postgres, exporting to the
 * mesh's OTLP receiver, `--cpu-prof`, load average 12-18): 2.0 s of CPU from launch to SERVING
 * unbundled (43% in Node's module loader) and 1.1 s bundled; SERVING after 2.7 s and 1.1 s.
 *
 * The bundle lives beside the entry point, so paths a service resolves from its own module
 * (`new URL("../drizzle", import.meta.url)`, its package.json) resolve as before. Native addons,
 * PGlite and @grpc/grpc-js stay outside (loaded from node_modules at run time). CommonJS code inside the bundle
 * gets a real `require` (for Node built-ins and anything left outside), `__filename` and
 * `__dirname` (the bundle's own). No source map by default: Node 20 parses a bundle's map eagerly
 * under `--enable-source-maps` (0.4 s of the 1.1 s above); `BUNDLE_SOURCEMAP=linked` writes one
 * for debugging a bundled process.
 *
 * A package that finds files beside its own modules (`new URL("./x.json", import.meta.url)`)
 * must stay outside the bundle (`--external PKG`) or be told where its files are (meshctl hands
 * the console its package's `dist`: kept outside, it cost `up` ~1 s of CPU).
 *
 * Beside the bundle goes `<outfile>.inputs.json`: the SHA-256 of every file of the repository's
 * own it was built from (everything outside node_modules: the service's and the libs' `dist`),
 * and of every file the build wrote (`outputs`: the bundle and its chunks). `meshctl up` starts
 * the bundle only while each output is there as written and each input still has that content, so a
 * `tsc` run since (a service's or a lib's, `npm run dev` included) means the entry point runs.
 * File times cannot tell: turbo restores a cached build's files in no fixed order, and 3 of 7
 * services' entry points came out a few ms newer than their bundles, so they ran unbundled
 * (0.5-0.7 s more CPU each at start-up).
 *
 * Beside the bundle also go its CommonJS twin `<outfile minus .js>.cjs` (one file, no chunks:
 * esbuild wraps code reached through `import()` so it still runs only when first imported) and
 * the launcher `<outfile minus .js>.start.cjs` (a copy of code-cache.cjs), which `meshctl up`
 * starts: it runs the twin through `vm.Script` with a V8 code cache, which Node 20 offers for
 * no ES module. The twin's entry point runs after its imports in an async function (esbuild
 * emits no top-level await as CommonJS); an entry point that imports or exports after its first
 * statement (meshctl's) gets no twin. Externals must load with `require()` (PGlite ships
 * CommonJS too). Both are recorded among the outputs.
 */
import { createHash } from "node:crypto";
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { build } from "esbuild";

const { values, positionals } = parseArgs({
  options: { external: { type: "string", multiple: true, default: [] } },
  allowPositionals: true,
});
const [entry = "dist/main.js", outfile = "dist/main.bundle.js"] = positionals;
const started = performance.now();
const sourcemap = process.env.BUNDLE_SOURCEMAP || false;
// Code reached only through `import()` goes into chunks beside the bundle (`<bundle>.chunk-*.js`,
// same directory, so `import.meta.url` resolves alike), loaded when first imported. In one file,
// the external modules such code imports were imported at the top: `libs/db` loads PGlite only
// when it opens a PGlite database, but drizzle's PGlite driver, inside, imported it statically,
// and every service loaded PGlite's 900 kB of JavaScript (~50 ms of CPU) on a Postgres server.
const outdir = dirname(outfile);
const name = basename(outfile, ".js");
const externals = [
  "@node-rs/*",
  "*.node",
  "@electric-sql/pglite",
  "@electric-sql/pglite/*",
  "@grpc/grpc-js",
  ...values.external,
];
const result = await build({
  entryPoints: [entry],
  outdir,
  entryNames: name,
  chunkNames: `${name}.chunk-[hash]`,
  splitting: true,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  // Native addons load from node_modules. PGlite finds its WebAssembly and data files beside its
  // own modules. @grpc/grpc-js (a megabyte every process would parse) is needed only by the
  // OTLP/gRPC exporters when OTEL_EXPORTER_OTLP_PROTOCOL=grpc, and they require it lazily; the
  // exporters themselves are inside: sdk-node requires all three at load, and left outside they
  // loaded their own copies of sdk-metrics, otlp-transformer, core, resources and
  // semantic-conventions from node_modules (245 CommonJS files, 975 kB; ~0.2 s of CPU per process).
  external: externals,
  banner: {
    js: [
      'import { createRequire as __bundleRequire } from "node:module";',
      'import { fileURLToPath as __bundleFileURLToPath } from "node:url";',
      'import { dirname as __bundleDirname } from "node:path";',
      "const require = __bundleRequire(import.meta.url);",
      "const __filename = __bundleFileURLToPath(import.meta.url);",
      "const __dirname = __bundleDirname(__filename);",
    ].join("\n"),
  },
  sourcemap,
  sourcesContent: false,
  legalComments: "none",
  logLevel: "warning",
  metafile: true,
});
// The CommonJS twin (`<name>.cjs`, one file) and its launcher (`<name>.start.cjs`, see
// code-cache.cjs), which meshctl starts: Node 20 keeps no code cache for ES modules, and
// compiling the bundle was 12-28% of each service's start-up CPU.
const cjsFile = join(outdir, `${name}.cjs`);
const launcher = join(outdir, `${name}.start.cjs`);
const split = splitEntry(readFileSync(entry, "utf8"));
if (split) {
  const cjs = await build({
    entryPoints: [entry],
    outfile: cjsFile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: externals,
    define: { "import.meta.url": "__bundleImportMetaUrl" },
    banner: { js: 'const __bundleImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    plugins: [withoutTopLevelAwait(resolve(entry), split)],
    sourcemap,
    sourcesContent: false,
    legalComments: "none",
    logLevel: "warning",
    metafile: true,
  });
  copyFileSync(fileURLToPath(new URL("./code-cache.cjs", import.meta.url)), launcher);
  result.metafile.outputs[relative(process.cwd(), launcher)] = { bytes: statSync(launcher).size };
  Object.assign(result.metafile.outputs, cjs.metafile.outputs);
} else {
  // An entry point that exports or imports after its first statement (meshctl's): no twin, and
  // none of an earlier build left to look current.
  rmSync(cjsFile, { force: true });
  rmSync(launcher, { force: true });
}
const modules = Object.keys(result.metafile.inputs).length;
// Only now, the build done: the chunks of a build before that this one did not write again. Removed
// before esbuild ran, a failed rebuild (a broken dependency, Ctrl-C) left a bundle without its
// chunks; a chunk this build wrote again (same content, same name) stays for a running process
// that has yet to import() it.
const written = new Set(Object.keys(result.metafile.outputs).map((o) => resolve(o)));
for (const f of readdirSync(outdir))
  if (f.startsWith(`${name}.chunk-`) && !written.has(resolve(outdir, f))) rmSync(join(outdir, f));
writeFileSync(
  inputsRecordOf(outfile),
  `${JSON.stringify({ inputs: ownInputs(result.metafile, outfile), outputs: outputsOf(result.metafile, outfile) }, null, 1)}\n`,
);
const bytes = Object.values(result.metafile.outputs).reduce((sum, o) => sum + o.bytes, 0);
console.log(
  `meshwork-bundle: ${entry} -> ${outfile}: ${modules} modules, ${(bytes / 1e6).toFixed(1)} MB, ${Math.round(performance.now() - started)} ms`,
);

/** The file beside a bundle that records what it was built from. */
function inputsRecordOf(bundle) {
  return `${bundle}.inputs.json`;
}

/**
 * Every file this build wrote (the bundle, its chunks, their maps), by path relative to the
 * bundle's directory, each with the SHA-256 (hex) of its content: `meshctl up` starts the bundle
 * only while all of them are there as written (a chunk gone means an import that fails).
 */
function outputsOf(metafile, bundle) {
  const out = {};
  const base = dirname(resolve(bundle));
  for (const output of Object.keys(metafile.outputs).sort()) {
    const path = resolve(output);
    out[relative(base, path)] = createHash("sha256").update(readFileSync(path)).digest("hex");
  }
  return out;
}

/**
 * The repository's own files the bundle holds (not under node_modules), by path relative to
 * the bundle's directory, each with the SHA-256 (hex) of its content.
 */
function ownInputs(metafile, bundle) {
  const out = {};
  const base = dirname(resolve(bundle));
  for (const input of Object.keys(metafile.inputs).sort()) {
    if (input.includes("node_modules/") || input.includes(":")) continue;
    const path = resolve(input);
    out[relative(base, path)] = createHash("sha256").update(readFileSync(path)).digest("hex");
  }
  return out;
}

/**
 * The entry point's leading imports and the rest, for the CommonJS twin: esbuild cannot emit
 * top-level `await` as CommonJS, and a service's entry point awaits its start at the top. The
 * rest runs in an async function whose failure is thrown on its own, as a rejected top-level
 * await (an uncaught error, exit code 1). Undefined (no twin) for an entry point with an import
 * or export after its first statement, which this would bundle wrong.
 */
function splitEntry(text) {
  const head = /^(?:\s|\/\/[^\n]*\n|\/\*[\s\S]*?\*\/|import\s[^;]*;)*/.exec(text)?.[0] ?? "";
  const body = text.slice(head.length);
  if (/^\s*(import|export)[\s{*]/m.test(body)) return undefined;
  return `${head}\nvoid (async () => {\n${body}\n})().catch((err) => {\n  setImmediate(() => {\n    throw err;\n  });\n});\n`;
}

/** An esbuild plugin that gives the entry point (`entryPath`) the `contents` of {@link splitEntry}. */
function withoutTopLevelAwait(entryPath, contents) {
  return {
    name: "without-top-level-await",
    setup(b) {
      b.onLoad({ filter: /\.js$/ }, (args) =>
        args.path === entryPath ? { contents, loader: "js", resolveDir: dirname(args.path) } : undefined,
      );
    },
  };
}
