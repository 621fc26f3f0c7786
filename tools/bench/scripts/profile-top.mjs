#!/usr/bin/env node
/**
 * Summarises a V8 CPU profile (`.cpuprofile`, as `MESHWORK_BENCH_PROFILE_SERVERS=<dir>` or
 * `node --cpu-prof` writes): the functions with the most self time and the packages they belong
 * to, as shares of the process's busy time (idle left out), and optionally the inclusive time of
 * functions matching regular expressions.
 *
 *   node scripts/profile-top.mjs CPU.*.cpuprofile [count] [--incl 'startSpan,serializeTraceExportRequest']
 *     [--since 'ProxiedCall' [--skip 2]]
 *
 * `--since REGEX` leaves out every sample before the first whose stack has a function matching
 * it (`name url`), and `--skip S` the S seconds after that one too: the steady state of a bench
 * run without the process's start (module loading, compilation), which on a loaded machine can
 * take more CPU than the calls measured.
 */
import { readFileSync } from "node:fs";

const args = process.argv.slice(2);
const inclAt = args.indexOf("--incl");
const incl = inclAt >= 0 ? (args.splice(inclAt, 2)[1] ?? "").split(",").filter(Boolean) : [];
const sinceAt = args.indexOf("--since");
const since = sinceAt >= 0 ? new RegExp(args.splice(sinceAt, 2)[1] ?? "") : undefined;
const skipAt = args.indexOf("--skip");
const skipUs = skipAt >= 0 ? Number(args.splice(skipAt, 2)[1] ?? 0) * 1e6 : 0;
const [file, countArg] = args;
if (!file) {
  console.error("usage: profile-top.mjs <file.cpuprofile> [count] [--incl regex,regex]");
  process.exit(2);
}
const count = Number(countArg ?? 30);
const profile = JSON.parse(readFileSync(file, "utf8"));
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

/** Whether the stack of node `id` has a function matching `re`. */
const stackMatches = (id, re) => {
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const { functionName, url } = nodes.get(cur).callFrame;
    if (re.test(`${functionName} ${url}`)) return true;
  }
  return false;
};

// The first sample counted: with --since, the first whose stack matches, plus --skip seconds.
let first = 0;
if (since) {
  first = profile.samples.findIndex((id) => stackMatches(id, since));
  if (first < 0) {
    console.error(`no sample's stack matches ${since.source}`);
    process.exit(1);
  }
  for (let skipped = 0; skipped < skipUs && first < profile.samples.length; first++) {
    skipped += profile.timeDeltas[first + 1] ?? 0;
  }
}

// Microseconds per node: each sample is charged the delta to the next one.
const time = new Map();
for (let i = first; i < profile.samples.length; i++) {
  const id = profile.samples[i];
  time.set(id, (time.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
}

const where = (url) => url.replace(/^file:\/\//, "").replace(/.*node_modules\//, "");
const packageOf = (url) => {
  if (url === "" || url.startsWith("node:")) return url || "(native)";
  const path = where(url);
  if (path === url.replace(/^file:\/\//, "")) return path.split("/").slice(-3, -1).join("/");
  return path
    .split("/")
    .slice(0, path.startsWith("@") ? 2 : 1)
    .join("/");
};

let busy = 0;
const bySelf = new Map();
const byPackage = new Map();
for (const [id, us] of time) {
  const { functionName, url, lineNumber } = nodes.get(id).callFrame;
  if (functionName === "(idle)") continue;
  busy += us;
  const key = `${functionName || "(anonymous)"} ${where(url).split("/").slice(-2).join("/")}:${lineNumber + 1}`;
  bySelf.set(key, (bySelf.get(key) ?? 0) + us);
  const pkg = url ? packageOf(url) : functionName;
  byPackage.set(pkg, (byPackage.get(pkg) ?? 0) + us);
}

const share = (us) => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
const top = (map, n) =>
  [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([key, us]) => `  ${share(us)}  ${key}`)
    .join("\n");
console.log(`${file}: busy ${(busy / 1e6).toFixed(1)} s`);
console.log(`self time:\n${top(bySelf, count)}`);
console.log(`by package:\n${top(byPackage, 15)}`);

if (incl.length > 0) {
  const patterns = incl.map((p) => new RegExp(p));
  const totals = patterns.map(() => 0);
  for (const [id, us] of time) {
    const hit = patterns.map(() => false);
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const { functionName, url } = nodes.get(cur).callFrame;
      patterns.forEach((re, i) => {
        if (re.test(`${functionName} ${url}`)) hit[i] = true;
      });
    }
    hit.forEach((h, i) => {
      if (h) totals[i] += us;
    });
  }
  console.log(`inclusive:\n${patterns.map((re, i) => `  ${share(totals[i])}  ${re.source}`).join("\n")}`);
}
