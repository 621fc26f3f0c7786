import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * The services whose contracts `buf breaking --error-format=json` found broken: each line is a
 * JSON object whose `path` is `proto/meshwork/<service>/v1/...` or `meshwork/<service>/v1/...`.
 */
export function breakingServices(bufJsonLines: string): string[] {
  const found = new Set<string>();
  for (const line of bufJsonLines.split("\n")) {
    if (!line.trim().startsWith("{")) continue;
    const path = (JSON.parse(line) as { path?: string }).path ?? "";
    const service = /(?:^|\/)meshwork\/([a-z0-9]+)\/v\d+\//.exec(path)?.[1];
    if (service) found.add(service);
  }
  return [...found].sort();
}

/** The bump each package gets from the pending changesets (`.changeset/*.md` front matter); the largest wins. */
export function pendingBumps(changesetDir: string): Map<string, "major" | "minor" | "patch"> {
  const rank = { patch: 0, minor: 1, major: 2 } as const;
  const bumps = new Map<string, "major" | "minor" | "patch">();
  for (const file of readdirSync(changesetDir).filter((f) => f.endsWith(".md") && f !== "README.md")) {
    const text = readFileSync(join(changesetDir, file), "utf8");
    const front = /^---\n([\s\S]*?)\n---/.exec(text)?.[1] ?? "";
    for (const m of front.matchAll(/^\s*["']?([^"':\s]+)["']?\s*:\s*(major|minor|patch)\s*$/gm)) {
      const [pkg, bump] = [m[1] as string, m[2] as "major" | "minor" | "patch"];
      const had = bumps.get(pkg);
      if (!had || rank[bump] > rank[had]) bumps.set(pkg, bump);
    }
  }
  return bumps;
}

/**
 * Services with a breaking contract change but no pending major bump of their package
 * (`@meshwork/<service>`): what the release check refuses, with the changeset to write.
 */
export function missingMajorBumps(services: readonly string[], bumps: ReadonlyMap<string, string>): string[] {
  return services.filter((s) => bumps.get(`@meshwork/${s}`) !== "major");
}
