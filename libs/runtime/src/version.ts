import { createRequire } from "node:module";

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
