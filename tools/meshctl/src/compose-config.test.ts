import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { writeComposeSecrets } from "./compose-secrets.js";
import { findServices, type ServiceManifest } from "./services.js";

/**
 * docker-compose.yml read by a real Compose implementation: Debian's `docker-compose` (1.29,
 * which loads the Compose Specification and validates it against its JSON schema; `config` needs
 * no Docker engine). CI installs it (.ci/run); elsewhere `apt-get install docker-compose`, or
 * point COMPOSE at another implementation with the same `config` command (`docker compose`).
 * The static checks of compose.test.ts then run on what Compose itself made of the file.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const run = promisify(execFile);
const compose = (process.env.COMPOSE ?? "docker-compose").split(" ");

async function config(file: string, envFile: string): Promise<string> {
  const [bin, ...pre] = compose as [string, ...string[]];
  const { stdout } = await run(
    bin,
    [...pre, "--env-file", envFile, "--project-directory", root, "-f", file, "config"],
    { cwd: root, maxBuffer: 16 * 1024 * 1024 },
  );
  return stdout;
}

const failure = async (file: string, envFile: string) =>
  config(file, envFile).then(
    () => "",
    (err: { stderr?: string }) => err.stderr ?? String(err),
  );

interface Resolved {
  services: Record<
    string,
    {
      environment?: Record<string, string>;
      depends_on?: Record<string, { condition: string }>;
      stop_grace_period?: string;
      healthcheck?: { test: string[] };
      ports?: Array<{ published: number | string; target: number }>;
      secrets?: Array<{ source: string }>;
    }
  >;
}

describe("docker-compose.yml through a real Compose implementation", () => {
  let dir: string;
  let envFile: string;
  let secrets: Record<string, string>;
  let manifests: ServiceManifest[];
  let resolved: Resolved;

  beforeAll(async () => {
    // Every process, the legacy monolith (strangler fig) among them.
    manifests = findServices(root);
    dir = mkdtempSync(join(tmpdir(), "mw-compose-config-"));
    envFile = join(dir, "compose.env");
    secrets = writeComposeSecrets(envFile, manifests);
    resolved = parse(await config(join(root, "docker-compose.yml"), envFile)) as Resolved;
  }, 180_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("is a valid Compose file: Compose loads it, merges its anchors and fills every variable from the secrets file", () => {
    for (const m of manifests) {
      const s = resolved.services[m.name];
      expect(s, m.name).toBeDefined();
      const env = s?.environment ?? {};
      // Interpolated from the env file meshctl secrets writes, as `docker compose --env-file` does.
      expect(env.NATS_PASSWORD, m.name).toBe(secrets[`${m.name.toUpperCase()}_NATS_PASSWORD`]);
      // The monolith has no mesh identity; its session-token secret comes from the file too.
      const legacy = m.kind === "legacy";
      expect(env.IDENTITY_KEY, m.name).toBe(
        legacy ? undefined : secrets[`${m.name.toUpperCase()}_IDENTITY_KEY`],
      );
      expect(env.IDENTITY_TRUST, m.name).toBe(legacy ? undefined : secrets.IDENTITY_TRUST);
      if (legacy) expect(env.LEGACY_TOKEN_SECRET).toBe(secrets.LEGACY_TOKEN_SECRET);
      expect(String(env.PORT), m.name).toBe(String(m.port));
      expect(JSON.stringify(resolved)).not.toContain("${");
      if (m.kind !== "gateway") {
        // The `x-service` anchor merged in: waits for a healthy Postgres, drains within its grace.
        expect(s?.depends_on?.postgres?.condition, m.name).toBe("service_healthy");
        expect(s?.stop_grace_period, m.name).toBe("15s");
        if (!legacy) expect(env.OTEL_EXPORTER_OTLP_ENDPOINT).toBe("http://otel-collector:4318");
      }
    }
    // The monolith answers /healthz once it is migrated and listening; the edges wait for it.
    expect(resolved.services.legacy?.healthcheck?.test.join(" ")).toMatch(/\/healthz/);
    expect(resolved.services.gateway?.depends_on?.legacy?.condition).toBe("service_healthy");
    expect(resolved.services.envoy?.depends_on?.legacy?.condition).toBe("service_healthy");
    expect(resolved.services.users?.secrets?.map((s) => s.source)).toEqual(["users_bootstrap_secret"]);
    expect(resolved.services.envoy?.ports).toEqual([
      expect.objectContaining({ published: 8080, target: 8080 }),
    ]);
  });

  it("is refused by Compose when broken: a misspelt key, a wrong type, a missing secret variable", async () => {
    const text = readFileSync(join(root, "docker-compose.yml"), "utf8");
    const broken = (name: string, content: string) => {
      const file = join(dir, name);
      writeFileSync(file, content);
      return file;
    };
    expect(
      await failure(
        broken("misspelt.yml", text.replace("stop_grace_period: 15s", "stop_grace_perod: 15s")),
        envFile,
      ),
    ).toMatch(/Unsupported config option for services\.\w+: 'stop_grace_perod'/);
    expect(
      await failure(broken("type.yml", text.replace("      retries: 30", "      retries: [30]")), envFile),
    ).toMatch(/retries/);
    const partial = join(dir, "partial.env");
    writeFileSync(
      partial,
      readFileSync(envFile, "utf8")
        .split("\n")
        .filter((l) => !l.startsWith("ORDERS_IDENTITY_KEY="))
        .join("\n"),
    );
    expect(await failure(join(root, "docker-compose.yml"), partial)).toMatch(
      /run npm run meshctl -- secrets/,
    );
  }, 300_000);
});
