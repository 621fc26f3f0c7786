import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { findServices } from "./services.js";

/**
 * The service images (Dockerfile) cannot be built here (no Docker engine), so the part that
 * decides what goes into each is run for real: `turbo prune <service> --docker`, for every
 * service of the repository, into a temporary directory.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const manifests = findServices(root);
const out = mkdtempSync(join(tmpdir(), "mw-prune-"));

function prune(pkg: string, dir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("npx", ["turbo", "prune", pkg, "--docker", "--out-dir", dir], {
      cwd: root,
      env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1", NO_COLOR: "1" },
    });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    child.on("close", (code) =>
      code === 0 ? resolve(text) : reject(new Error(`turbo prune ${pkg}: exit ${code}\n${text}`)),
    );
  });
}

/** Every file under `dir`, relative to it. */
function files(dir: string, prefix = ""): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(dir, join(prefix, e.name)) : [join(prefix, e.name)],
  );
}

describe("one image per service, from its pruned workspace", () => {
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("the Dockerfile prunes to the service, builds in a stage of its own, keeps production dependencies only, runs as non-root and checks grpc.health.v1", () => {
    const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
    const stages = [...dockerfile.matchAll(/^FROM \S+(?: AS (\w+))?$/gm)].map((m) => m[1] ?? "final");
    expect(stages).toEqual(["prune", "build", "final"]);
    expect(dockerfile).toMatch(/turbo prune "@meshwork\/\$\{SERVICE\}" --docker/);
    // The root's postinstall patches postgres.js (patch-package): the patches must be there before npm ci.
    expect(dockerfile).toMatch(
      /COPY --from=prune \/pruned\/json\/ \.\/\n(?:#.*\n)*COPY patches \.\/patches\nRUN npm ci/,
    );
    expect(dockerfile).toMatch(/npm prune --omit=dev/);
    const final = dockerfile.slice(dockerfile.lastIndexOf("\nFROM "));
    expect(final).toMatch(/^USER node$/m);
    // The build's commit reaches the process (meshwork_build_info, the registry record).
    expect(final).toMatch(/^ARG GIT_COMMIT=$/m);
    expect(final).toMatch(/MESHWORK_BUILD_COMMIT=\$\{GIT_COMMIT\}/);
    expect(final).not.toMatch(/^COPY \. /m);
    expect(final).toMatch(
      /^HEALTHCHECK .*\n.*node libs\/runtime\/dist\/health-probe\.js 127\.0\.0\.1:\$\{PORT/m,
    );
    expect(existsSync(join(root, "libs/runtime/src/health-probe.ts"))).toBe(true);
  });

  it("the image starts a service with its package.json's Node options, before the deployment's NODE_OPTIONS", () => {
    const dockerfile = readFileSync(join(root, "Dockerfile"), "utf8");
    // The build stage writes them to /app/node-options...
    const write = /^RUN node -p "(.*)" > node-options$/m.exec(dockerfile);
    expect(write).not.toBeNull();
    const dir = mkdtempSync(join(tmpdir(), "meshwork-image-options-"));
    try {
      const service = "gateway";
      const expression = (write?.[1] ?? "").replaceAll(/\$\{SERVICE\}/g, service);
      const written = spawnSync(process.execPath, ["-p", expression], { cwd: root, encoding: "utf8" });
      const gateway = manifests.find((m) => m.kind === "gateway");
      expect(written.stdout.trim()).toBe(gateway?.nodeOptions);
      writeFileSync(join(dir, "node-options"), written.stdout);
      // ...and the CMD runs node with them, the environment's own after them (they win).
      const cmd = /^CMD \["sh", "-c", (".*")\]$/m.exec(dockerfile);
      const line = (JSON.parse(cmd?.[1] ?? '""') as string).replace(
        /node apps\/\$\{SERVICE\}\/dist\/main\.js/,
        "node -e 'console.log(process.env.NODE_OPTIONS)'",
      );
      const run = (env: Record<string, string>) =>
        spawnSync("sh", ["-c", line], {
          cwd: dir,
          encoding: "utf8",
          env: { PATH: process.env.PATH ?? "", ...env },
        }).stdout.trim();
      expect(run({ SERVICE: service })).toBe(gateway?.nodeOptions);
      expect(run({ SERVICE: service, NODE_OPTIONS: "--max-semi-space-size=16" })).toBe(
        `${gateway?.nodeOptions} --max-semi-space-size=16`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("the pruned context of each service holds its own app and the libraries it uses, never another app's source", async () => {
    const apps = manifests.map((m) => basename(m.dir));
    expect(apps.length).toBeGreaterThanOrEqual(6);
    await Promise.all(
      manifests.map(async (m) => {
        const app = basename(m.dir);
        const dir = join(out, app);
        await prune(`@meshwork/${app}`, dir);
        const full = files(join(dir, "full"));
        const json = files(join(dir, "json"));
        expect(full, app).toContain(`apps/${app}/package.json`);
        expect(full.some((f) => f.startsWith(`apps/${app}/src/`))).toBe(true);
        // The mesh's processes run on the runtime; the legacy monolith (Fastify) does not.
        if (m.kind !== "legacy") expect(full, app).toContain("libs/runtime/package.json");
        for (const other of apps.filter((a) => a !== app)) {
          expect(
            full.filter((f) => f.startsWith(`apps/${other}/`)),
            `${app}'s image context holds ${other}`,
          ).toEqual([]);
          expect(json.filter((f) => f.startsWith(`apps/${other}/`))).toEqual([]);
        }
        // No tool either (meshctl depends on every service), but the bundler its build runs
        // (tools/bundle: a build dependency; the final stage keeps production dependencies only).
        expect(full, app).toContain("tools/bundle/package.json");
        expect(full.filter((f) => f.startsWith("tools/") && !f.startsWith("tools/bundle/"))).toEqual([]);
        // The pruned lockfile installs this workspace and no other app.
        const lock = JSON.parse(readFileSync(join(dir, "json/package-lock.json"), "utf8")) as {
          packages: Record<string, unknown>;
        };
        const locked = Object.keys(lock.packages).filter((k) => /^apps\/[^/]+$/.test(k));
        expect(locked).toEqual([`apps/${app}`]);
      }),
    );
  }, 300_000);
});
