#!/usr/bin/env node
/**
 * `npm start`: builds what changed, then runs `meshctl up` in this same process.
 *
 * Why not `turbo run build && node meshctl up`: with nothing to build, turbo still hashes every
 * input of every package (plus its own Node wrapper and a second Node process for meshctl),
 * 1.7-2.1 s of a cached start measured here. This script skips turbo when no input of any
 * workspace package (its files outside node_modules, dist and .turbo) and no file of the root's
 * (package.json, package-lock.json, turbo.json, tsconfig.base.json, buf*.yaml, proto/,
 * third_party/, patches/) changed since the last build it ran (`node_modules/.cache/meshwork/start-stamp`,
 * holding the time that build began), and meshctl's bundle is there. Anything newer, or no stamp:
 * it runs turbo as before (a cache hit when the change did not matter) and writes the stamp.
 * `MESHWORK_START_BUILD=always` runs turbo every time, `never` never.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const SKIP = new Set(["node_modules", "dist", ".turbo", "coverage", ".vitest", ".bench", ".meshwork"]);
const ROOT_FILES = [
  "package.json",
  "package-lock.json",
  "turbo.json",
  "tsconfig.base.json",
  "buf.yaml",
  "buf.gen.yaml",
];
// patches/: patch-package's patches are applied at install and bundled into every service.
const ROOT_DIRS = ["proto", "third_party", "patches"];
const WORKSPACES = ["apps", "libs", "tools"];

/** The stamp file of the repository at `root`. */
export function stampFile(root) {
  return join(root, "node_modules", ".cache", "meshwork", "start-stamp");
}

/**
 * The first file under `dir` (skipping build outputs) modified after `sinceMs`, or a directory
 * below `dir` whose entries changed since (a file added, deleted or renamed: a rename keeps the
 * file's own time), or undefined.
 */
function newerIn(dir, sinceMs) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  for (const e of entries) {
    if (SKIP.has(e.name)) continue;
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (statSync(path).mtimeMs > sinceMs) return `${path}/`;
      const found = newerIn(path, sinceMs);
      if (found) return found;
    } else if (e.isFile() && statSync(path).mtimeMs > sinceMs) return path;
  }
  return undefined;
}

/**
 * Why the repository at `root` needs a build before `meshctl up`, in words, or undefined when
 * nothing changed since the build recorded in its stamp.
 */
export function buildNeeded(root) {
  const stamp = stampFile(root);
  if (!existsSync(stamp)) return "no build recorded by npm start yet";
  const sinceMs = Number(readFileSync(stamp, "utf8").trim());
  if (!Number.isFinite(sinceMs)) return `${stamp} is unreadable`;
  if (!existsSync(join(root, "tools/meshctl/dist/main.bundle.js"))) return "meshctl is not built";
  for (const f of ROOT_FILES) {
    const path = join(root, f);
    if (existsSync(path) && statSync(path).mtimeMs > sinceMs) return `${f} changed`;
  }
  for (const d of ROOT_DIRS) {
    const found = newerIn(join(root, d), sinceMs);
    if (found) return `${found.slice(root.length + 1)} changed`;
  }
  for (const w of WORKSPACES) {
    let packages = [];
    try {
      packages = readdirSync(join(root, w), { withFileTypes: true }).filter((e) => e.isDirectory());
    } catch {
      continue;
    }
    for (const p of packages) {
      const found = newerIn(join(root, w, p.name), sinceMs);
      if (found) return `${found.slice(root.length + 1)} changed`;
    }
  }
  return undefined;
}

/** Builds the services and meshctl with turbo (cached as before); records the stamp when it succeeds. */
export function build(root) {
  const began = Date.now();
  const turbo = spawnSync(
    join(root, "node_modules", ".bin", "turbo"),
    ["run", "build", "--filter=./apps/*", "--filter=@meshwork/meshctl", "--output-logs=errors-only"],
    { cwd: root, stdio: "inherit", env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1" } },
  );
  if (turbo.status !== 0) return turbo.status ?? 1;
  const stamp = stampFile(root);
  mkdirSync(dirname(stamp), { recursive: true });
  // The time the build began: a file saved while it ran counts as changed next time.
  writeFileSync(stamp, `${began}\n`);
  return 0;
}

/**
 * Why `npm start` builds first, or undefined when it does not: `MESHWORK_START_BUILD=always`
 * builds every time, `never` never (the caller built already: a test that runs `npm start` while
 * other tests run the same dist/ files, which turbo's cache restore rewrites in place), anything
 * else (unset) when {@link buildNeeded} says so.
 */
export function buildReason(setting, root) {
  if (setting === "always") return "asked to";
  if (setting === "never") return undefined;
  if (setting !== undefined && setting !== "")
    throw new Error(`MESHWORK_START_BUILD must be "always" or "never" (or unset), not "${setting}"`);
  return buildNeeded(root);
}

const self = fileURLToPath(import.meta.url);
if (process.argv[1] && fileURLToPath(pathToFileURL(process.argv[1])) === self) {
  const root = join(dirname(self), "..", "..");
  const why = buildReason(process.env.MESHWORK_START_BUILD, root);
  if (why) {
    console.log(`npm start: building (${why})`);
    const code = build(root);
    if (code !== 0) process.exit(code);
  }
  const meshctl = join(root, "tools/meshctl/dist/main.bundle.js");
  process.argv = [process.argv[0] ?? process.execPath, meshctl, "up", ...process.argv.slice(2)];
  await import(pathToFileURL(meshctl).href);
}
