import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { missingMajorBumps, pendingBumps } from "./contract-bumps.js";

/** One finding of `buf breaking --error-format=json`. */
interface BufFinding {
  path?: string;
  start_line?: number;
  type?: string;
  message?: string;
}

/** The service that owns a contract file (`[proto/]meshwork/<service>/v1/...`); none for shared or vendored files. */
export function owningService(path: string): string | undefined {
  const service = /^(?:proto\/)?meshwork\/([a-z0-9]+)\/v\d+\//.exec(path)?.[1];
  // meshwork/api/v1 holds the mesh's own annotations (access policies): no service ships it.
  return service === "api" ? undefined : service;
}

export interface ReleaseCheckOptions {
  /** The repository (buf.yaml, proto/, .changeset/). */
  root: string;
  /** A git ref or commit the contracts are compared with (CI: the merge base with main). */
  against: string;
  /** The buf binary (default: the repository's node_modules/.bin/buf). */
  buf?: string;
  say: (line: string) => void;
}

/**
 * The release rule for contracts: `buf breaking` against `against`; a breaking change to a
 * service's contract passes only with a pending major changeset of that service's package
 * (`.changeset/*.md`: `"@meshwork/<service>": major`); one outside any service's contract (the
 * shared annotations, vendored protos) never passes. Returns the exit code: 0 passes, 1 refuses,
 * 2 when buf itself could not run.
 */
export function releaseCheck(options: ReleaseCheckOptions): 0 | 1 | 2 {
  const { root, against, say } = options;
  const buf = options.buf ?? join(root, "node_modules/.bin/buf");
  const r = spawnSync(buf, ["breaking", "--against", `.git#ref=${against}`, "--error-format=json"], {
    cwd: root,
    encoding: "utf8",
  });
  // buf exits 100 when it found breaking changes, 0 when none; anything else is buf failing.
  if (r.status !== 0 && r.status !== 100) {
    say(
      `release check: buf breaking failed (exit ${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim()}`,
    );
    return 2;
  }
  const findings = r.stdout
    .split("\n")
    .filter((l) => l.trim().startsWith("{"))
    .map((l) => JSON.parse(l) as BufFinding);
  if (findings.length === 0) {
    say(`release check: no breaking contract change against ${against}`);
    return 0;
  }
  const where = (f: BufFinding) =>
    `${f.path ?? "?"}${f.start_line ? `:${f.start_line}` : ""}: ${f.message ?? ""} (${f.type ?? "?"})`;
  const unowned = findings.filter((f) => !owningService(f.path ?? ""));
  const services = [
    ...new Set(findings.map((f) => owningService(f.path ?? "")).filter((s) => s !== undefined)),
  ];
  const changesets = join(root, ".changeset");
  const bumps = existsSync(changesets) ? pendingBumps(changesets) : new Map<string, "major">();
  const missing = new Set(missingMajorBumps(services, bumps));
  say(`release check: buf breaking against ${against} found ${findings.length} breaking change(s)`);
  for (const f of findings) {
    const service = owningService(f.path ?? "");
    const verdict = !service
      ? "no service owns it: not allowed"
      : missing.has(service)
        ? `needs a major bump of @meshwork/${service}`
        : `allowed: @meshwork/${service} has a pending major changeset`;
    say(`  ${where(f)}: ${verdict}`);
  }
  for (const service of missing) {
    say(
      `release check: @meshwork/${service} breaks its contract without a major bump: run \`npx changeset\`, pick @meshwork/${service}, choose major, say what breaks for its callers, and commit the .changeset file`,
    );
  }
  if (unowned.length > 0) {
    say(
      "release check: a breaking change outside a service's contract cannot be released: make it compatible",
    );
  }
  return missing.size === 0 && unowned.length === 0 ? 0 : 1;
}

// `tsx tools/meshctl/src/release/check.ts --against REF`: what .ci/run calls (before anything is
// built; this file imports nothing of the workspace). Run as this very file: inside meshctl's
// bundle `import.meta.url` is the bundle's, which is then `argv[1]` too.
const self = fileURLToPath(import.meta.url);
if (process.argv[1] && resolve(process.argv[1]) === self && /[\\/]check\.[jt]s$/.test(self)) {
  const at = process.argv.indexOf("--against");
  const against = at > 0 ? process.argv[at + 1] : undefined;
  if (!against) {
    process.stderr.write("usage: check.ts --against GIT-REF\n");
    process.exit(2);
  }
  const root = fileURLToPath(new URL("../../../../", import.meta.url));
  process.exitCode = releaseCheck({ root, against, say: (l) => process.stdout.write(`${l}\n`) });
}
