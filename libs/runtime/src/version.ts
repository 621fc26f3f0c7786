import { createRequire } from "node:module";
import type { Meter } from "@opentelemetry/api";

/**
 * The `version` of the package a module belongs to, read from the `package.json` one level above
 * it (`src/` and `dist/` alike): `packageVersion(import.meta.url)` in a service's server.ts. It is
 * the version the service reports to telemetry and announces in the registry.
 */
export function packageVersion(moduleUrl: string): string {
  try {
    const pkg = createRequire(moduleUrl)("../package.json") as { version?: unknown };
    return typeof pkg.version === "string" ? pkg.version : "0.0.0";
  } catch {
    return "0.0.0";
  }
}

/** The variable the build sets to the commit it built (the Dockerfile's `GIT_COMMIT`, `meshctl up`). */
export const BUILD_COMMIT_VAR = "MESHWORK_BUILD_COMMIT";

/**
 * The git commit the running code was built from: `MESHWORK_BUILD_COMMIT`, an abbreviated or
 * full hex commit id, `-dirty` when the tree had uncommitted changes. Undefined when unset or
 * not a commit id (a value that is not one is never reported as one).
 */
export function buildCommit(
  env: Readonly<Record<string, string | undefined>> = process.env,
): string | undefined {
  const value = env[BUILD_COMMIT_VAR]?.trim().toLowerCase();
  return value && /^[0-9a-f]{7,40}(-dirty)?$/.test(value) ? value : undefined;
}

/** What a process says it is: its package's version and the commit it was built from, if known. */
export interface BuildInfo {
  service: string;
  version: string;
  commit?: string;
}

/**
 * The version with the commit as semver build metadata (`0.4.1+3f2a9c1d0b7e`), as announced in
 * the discovery registry: one field, still a valid semver, compared as the version alone.
 */
export function versionWithCommit(version: string, commit: string | undefined): string {
  return commit ? `${version}+${commit}` : version;
}

/**
 * `meshwork_build_info{service_name, version, commit} 1` on `/metrics` (the Prometheus idiom for
 * build facts: join it on `instance` to split any series by version). `commit` is `unknown`
 * when the build did not say.
 */
export function observeBuildInfo(meter: Meter, info: BuildInfo): void {
  const attributes = { service_name: info.service, version: info.version, commit: info.commit ?? "unknown" };
  meter
    .createObservableGauge("meshwork.build_info", {
      description: "Always 1: the version of the process's package and the git commit it was built from",
    })
    .addCallback((r) => r.observe(1, attributes));
}
