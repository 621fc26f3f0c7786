import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { COMPOSE_NATS_CONFIG_PATH, renderComposeNatsConfig, writeComposeSecrets } from "./compose-secrets.js";
import { ENVOY_CONFIG_PATH } from "./envoy.js";
import { findServices, type ServiceManifest } from "./services.js";

/**
 * `docker-compose.yml` cannot run here (no Docker engine), so it is checked statically against
 * the code it deploys: every service of the repository is in it, configured with variables its
 * own config loader accepts, on its own database and role, reachable at the addresses Envoy,
 * Prometheus and the collector use.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));

interface ComposeService {
  image?: string;
  build?: { context: string; args?: Record<string, string> };
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, unknown> | string[];
  healthcheck?: { test: string[] };
  command?: string[];
}

const read = (path: string) => readFileSync(join(root, path), "utf8");

describe("docker-compose.yml", () => {
  let compose: { services: Record<string, ComposeService>; volumes?: Record<string, unknown> };
  let manifests: ServiceManifest[];
  let secrets: Record<string, string>;
  /** `${VAR:?message}` references in the file, each a secret compose reads from the env file. */
  let referenced: string[];
  beforeAll(() => {
    // Every process, the legacy monolith (strangler fig) among them.
    manifests = findServices(root);
    expect(manifests.map((m) => m.kind)).toContain("legacy");
    // As `docker compose --env-file .meshwork/compose.env` does: the secrets `meshctl secrets` made.
    const dir = mkdtempSync(join(tmpdir(), "mw-compose-"));
    const envFile = join(dir, "compose.env");
    secrets = writeComposeSecrets(envFile, manifests);
    expect(statSync(envFile).mode & 0o777).toBe(0o600);
    rmSync(dir, { recursive: true, force: true });
    const text = read("docker-compose.yml");
    referenced = [...text.matchAll(/\$\{([A-Z0-9_]+):\?[^}]*\}/g)].map((m) => m[1] as string);
    const interpolated = text.replace(
      /\$\{([A-Z0-9_]+):\?[^}]*\}/g,
      (_, name: string) => secrets[name] ?? "",
    );
    compose = parse(interpolated, { merge: true });
  });
  const env = (name: string) => compose.services[name]?.environment ?? {};

  it("runs every service of the repository from the one Dockerfile, on its default port", () => {
    expect(manifests.length).toBeGreaterThanOrEqual(6);
    for (const m of manifests) {
      const s = compose.services[m.name];
      expect(s, `service ${m.name}`).toBeDefined();
      // The Dockerfile runs apps/$SERVICE/dist/main.js.
      expect(s?.build).toEqual({ context: ".", args: { SERVICE: basename(m.dir) } });
      expect(m.main).toBe("dist/main.js");
      expect(env(m.name).PORT).toBe(String(m.port));
      expect(env(m.name).HOST).toBe("0.0.0.0");
      // The image has node and no curl: the check is a node one-liner.
      expect(s?.healthcheck?.test.slice(0, 2)).toEqual(["CMD", "node"]);
      expect(s?.healthcheck?.test.join(" ")).toMatch(m.kind === "gateway" ? /\/ready/ : /\/healthz/);
    }
    const dockerfile = read("Dockerfile");
    expect(dockerfile).toMatch(/ARG SERVICE/);
    expect(dockerfile).toMatch(/node apps\/\$\{SERVICE\}\/dist\/main\.js/);
    expect(read(".dockerignore")).toMatch(/node_modules/);
  });

  it("gives each service with a database its own database and role, and no one else's", () => {
    const init = read("infra/postgres/init.sql");
    const owners = new Set<string>();
    for (const m of manifests) {
      const url = env(m.name).DATABASE_URL;
      if (!m.database) {
        expect(url, m.name).toBeUndefined();
        continue;
      }
      const u = new URL(url ?? "");
      expect(u.hostname).toBe("postgres");
      expect(u.username).toBe(m.name);
      expect(u.pathname).toBe(`/${m.name}`);
      expect(owners.has(u.username)).toBe(false);
      owners.add(u.username);
      expect(init).toContain(`CREATE ROLE ${m.name} LOGIN PASSWORD '${decodeURIComponent(u.password)}';`);
      expect(init).toContain(`CREATE DATABASE ${m.name} OWNER ${m.name};`);
      expect(init).toContain(`REVOKE CONNECT ON DATABASE ${m.name} FROM PUBLIC;`);
    }
    expect(owners.size).toBe(manifests.filter((m) => m.database).length);
    expect(compose.services.postgres?.volumes).toContain(
      "./infra/postgres/init.sql:/docker-entrypoint-initdb.d/10-meshwork.sql:ro",
    );
  });

  it("has no default admin: users takes its one-time bootstrap secret from a compose secret (a file)", () => {
    const raw = parse(read("docker-compose.yml"), { merge: true }) as {
      services: Record<string, { secrets?: string[] }>;
      secrets?: Record<string, { file?: string }>;
    };
    for (const name of Object.keys(raw.services)) {
      expect(
        Object.keys(env(name)).filter((k) => /ADMIN_EMAILS/.test(k)),
        name,
      ).toEqual([]);
    }
    expect(read("docker-compose.yml")).not.toMatch(/admin@meshwork\.local/);
    expect(env("users").USERS_BOOTSTRAP_SECRET_FILE).toBe("/run/secrets/users_bootstrap_secret");
    expect(env("users").USERS_BOOTSTRAP_SECRET).toBeUndefined();
    expect(raw.services.users?.secrets).toEqual(["users_bootstrap_secret"]);
    // Only users holds it.
    for (const [name, s] of Object.entries(raw.services))
      if (name !== "users") expect(s.secrets, name).toBeUndefined();
    expect(raw.secrets?.users_bootstrap_secret?.file).toBe("./.meshwork/users-bootstrap-secret");
    expect(read(".gitignore")).toMatch(/^\/?\.meshwork\/?$/m);
  });

  it("configures each service with variables its own config loader reads", async () => {
    for (const m of manifests) {
      const e = env(m.name);
      const { loadConfig } = (await import(pathToFileURL(join(m.dir, "dist/config.js")).href)) as {
        loadConfig: (env: Record<string, string>) => Record<string, unknown>;
      };
      // Whatever compose sets must come out of the loader: a misspelt variable would be ignored.
      const c = loadConfig(e) as {
        runtime?: { host: string; port: number; tracesExporter: string; otlpEndpoint?: string };
        host?: string;
        port?: number;
        tracesExporter?: string;
        otlpEndpoint?: string;
        db?: { url?: string };
        databaseUrl?: string;
        events?: { natsUrl: string; natsCredentials?: { user: string } };
        discovery?: { mode?: string; advertiseHost?: string; natsUrl?: string };
        jwksUrl?: string;
        adminHost?: string;
        strangler?: { legacyUrl?: string };
      };
      const runtime = c.runtime ?? {
        host: c.host,
        port: c.port,
        tracesExporter: c.tracesExporter,
        otlpEndpoint: c.otlpEndpoint,
      };
      // The monolith exports no traces (it predates the mesh); the rest do.
      expect(runtime, m.name).toMatchObject({
        host: "0.0.0.0",
        port: m.port,
        ...(m.kind === "legacy"
          ? {}
          : { tracesExporter: "otlp", otlpEndpoint: "http://otel-collector:4318" }),
      });
      if (m.database) expect(c.db?.url ?? c.databaseUrl, m.name).toBe(e.DATABASE_URL);
      if (m.kind === "legacy") {
        expect(c.events, "legacy's CDC relay and reverse sync").toBeDefined();
        expect(c).toMatchObject({ tokenSecret: secrets.LEGACY_TOKEN_SECRET });
      }
      if (c.events) expect(c.events.natsUrl).toBe("nats://nats:4222");
      if (c.events) expect(c.events.natsCredentials?.user).toBe(m.name);
      if (m.kind === "service") expect(c.discovery?.advertiseHost).toBe(m.name);
      if (m.kind === "gateway") {
        expect(c.discovery).toMatchObject({ mode: "registry", natsUrl: "nats://nats:4222" });
        expect(c.jwksUrl).toBe(
          `http://users:${manifests.find((x) => x.name === "users")?.port}/.well-known/jwks.json`,
        );
        expect(c.adminHost).toBe("0.0.0.0");
        const legacy = manifests.find((x) => x.kind === "legacy");
        expect(c.strangler?.legacyUrl).toBe(`http://${legacy?.name}:${legacy?.port}`);
      }
    }
  });

  it("publishes neither NATS nor the gateway's admin listener nor a service's own port on the host, and the observability UIs on its loopback only", () => {
    const published = Object.entries(compose.services).flatMap(([name, s]) =>
      (s.ports ?? []).map((p) => ({ name, container: Number(String(p).split(":").at(-1)?.split("/")[0]) })),
    );
    expect(published.filter((p) => p.name === "nats")).toEqual([]);
    const inside = new Set([
      4222,
      6222,
      8222,
      ...manifests.flatMap((m) => (m.adminPort ? [m.adminPort] : [])),
    ]);
    expect(published.filter((p) => inside.has(p.container))).toEqual([]);
    // Services are reached through an edge only (the gateway's public port is the one exception).
    const services = new Set(manifests.filter((m) => m.kind !== "gateway").map((m) => m.name));
    expect(published.filter((p) => services.has(p.name))).toEqual([]);
    // The observability UIs (traces, metrics, dashboards: no authentication) on the loopback only.
    for (const name of ["jaeger", "prometheus", "grafana"]) {
      const ports = compose.services[name]?.ports ?? [];
      expect(ports.length).toBeGreaterThan(0);
      for (const p of ports) expect(String(p)).toMatch(/^127\.0\.0\.1:/);
    }
  });

  it("takes every identity key, NATS password and the key encryption key from the secrets file, none written in the file itself", () => {
    expect(new Set(referenced)).toEqual(new Set(Object.keys(secrets)));
    const text = read("docker-compose.yml");
    expect(text).not.toMatch(/^\s*[A-Z_]*(IDENTITY_KEY|NATS_PASSWORD|IDENTITY_TRUST):\s*[^$\s]/m);
    const mesh = manifests.filter((m) => m.kind !== "legacy");
    for (const m of manifests) {
      expect(env(m.name).NATS_USER, m.name).toBe(m.name);
      expect(env(m.name).NATS_PASSWORD, m.name).toBe(secrets[`${m.name.toUpperCase()}_NATS_PASSWORD`]);
      // The monolith neither signs nor checks identity assertions: no key, no trust list.
      const identity = mesh.includes(m);
      expect(env(m.name).IDENTITY_KEY, m.name).toBe(
        identity ? secrets[`${m.name.toUpperCase()}_IDENTITY_KEY`] : undefined,
      );
      expect(env(m.name).IDENTITY_TRUST, m.name).toBe(identity ? secrets.IDENTITY_TRUST : undefined);
    }
    // Its session tokens' secret comes from the secrets file too (users will verify them).
    expect(env("legacy").LEGACY_TOKEN_SECRET).toBe(secrets.LEGACY_TOKEN_SECRET);
    // Users checks old sessions with the same secret (ExchangeLegacyToken).
    expect(env("users").LEGACY_TOKEN_SECRET).toBe(secrets.LEGACY_TOKEN_SECRET);
    expect(secrets.LEGACY_TOKEN_SECRET?.length).toBeGreaterThanOrEqual(32);
    // Users seals its signing keys at rest with a key from the secrets file (32 bytes).
    expect(env("users").USERS_KEY_ENCRYPTION_KEY).toBe(secrets.USERS_KEY_ENCRYPTION_KEY);
    expect(Buffer.from(secrets.USERS_KEY_ENCRYPTION_KEY ?? "", "base64")).toHaveLength(32);
    expect(text).not.toMatch(/^\s*USERS_KEY_ENCRYPTION_KEY:\s*[^$\s]/m);
    // Every process's public key is trusted, the gateway's among them.
    expect(secrets.IDENTITY_TRUST?.split(",").map((t) => t.split("=")[0])).toEqual(mesh.map((m) => m.name));
  });

  it("runs NATS with a user per process from the committed configuration, which is current", () => {
    const nats = compose.services.nats;
    expect(nats?.command).toEqual(["-c", "/etc/nats/nats.conf"]);
    expect(nats?.volumes).toContain(`./${COMPOSE_NATS_CONFIG_PATH}:/etc/nats/nats.conf:ro`);
    expect(read(COMPOSE_NATS_CONFIG_PATH)).toBe(renderComposeNatsConfig(manifests));
    for (const name of [...manifests.map((m) => m.name), "meshctl"]) {
      const variable = `${name.toUpperCase()}_NATS_PASSWORD`;
      expect(nats?.environment?.[variable], variable).toBe(secrets[variable]);
      expect(read(COMPOSE_NATS_CONFIG_PATH)).toContain(`password: $${variable}`);
    }
  });

  it("points Envoy, Prometheus and the collector at services that exist, on their ports", () => {
    const names = new Set(Object.keys(compose.services));
    const ports = new Map(manifests.map((m) => [m.name, m.port]));
    const envoy = parse(read(ENVOY_CONFIG_PATH)) as {
      static_resources: {
        clusters: Array<{
          name: string;
          load_assignment: {
            endpoints: Array<{
              lb_endpoints: Array<{
                endpoint: { address: { socket_address: { address: string; port_value: number } } };
              }>;
            }>;
          };
        }>;
      };
    };
    // (`envoy_admin` is Envoy's own admin on loopback, behind the admin_proxy listener;
    // `strangler_shadow` its own loopback listener that transcodes mirrored requests.)
    const upstreams = envoy.static_resources.clusters
      .filter((c) => c.name !== "envoy_admin" && c.name !== "strangler_shadow")
      .flatMap((c) =>
        c.load_assignment.endpoints.flatMap((e) =>
          e.lb_endpoints.map((l) => l.endpoint.address.socket_address),
        ),
      );
    // Every service's cluster (and the JWKS one) points at its compose service, on its port; the
    // ext_authz one at the gateway, on the EXT_AUTHZ_PORT compose gives it; the legacy cluster
    // (strangler fig) at the monolith.
    expect(new Set(upstreams.map((a) => a.address))).toEqual(
      new Set([...manifests.filter((m) => m.kind !== "gateway").map((m) => m.name), "gateway"]),
    );
    for (const a of upstreams) {
      expect(names.has(a.address), `envoy upstream ${a.address}`).toBe(true);
      const port =
        a.address === "gateway"
          ? Number(compose.services.gateway?.environment?.EXT_AUTHZ_PORT)
          : ports.get(a.address);
      expect(port).toBe(a.port_value);
    }
    expect(compose.services.envoy?.volumes).toContain(`./${ENVOY_CONFIG_PATH}:/etc/envoy/envoy.yaml:ro`);

    const prometheus = parse(read("infra/prometheus/prometheus.yml")) as {
      scrape_configs: Array<{ metrics_path: string; static_configs: Array<{ targets: string[] }> }>;
    };
    const targets = prometheus.scrape_configs.flatMap((j) =>
      j.static_configs.flatMap((s) => s.targets.map((t) => ({ target: t, path: j.metrics_path }))),
    );
    // The monolith serves no /metrics (the strangler's figures are the gateway's).
    for (const m of manifests.filter((x) => x.kind !== "legacy")) {
      const expected =
        m.kind === "gateway"
          ? { target: `${m.name}:${m.adminPort}`, path: "/stats/prometheus" }
          : { target: `${m.name}:${m.port}`, path: "/metrics" };
      expect(targets).toContainEqual(expected);
    }

    const collector = parse(read("infra/otel/collector.yaml")) as {
      receivers: { otlp: { protocols: { http: { endpoint: string } } } };
      processors: Record<string, unknown>;
      exporters: Record<string, { endpoint: string }>;
      service: { pipelines: { traces: { receivers: string[]; processors: string[]; exporters: string[] } } };
    };
    expect(collector.receivers.otlp.protocols.http.endpoint).toBe("0.0.0.0:4318");
    expect(collector.exporters["otlp/jaeger"]?.endpoint).toBe("jaeger:4317");
    // The traces pipeline uses what is defined, and ends at Jaeger.
    const traces = collector.service.pipelines.traces;
    for (const r of traces.receivers) expect(collector.receivers).toHaveProperty([r]);
    for (const p of traces.processors) expect(collector.processors).toHaveProperty([p]);
    expect(traces.exporters).toEqual(["otlp/jaeger"]);
    expect(env("jaeger").COLLECTOR_OTLP_ENABLED).toBe("true");
    expect(read("infra/grafana/provisioning/datasources/datasources.yaml")).toContain(
      "http://prometheus:9090",
    );
  });

  it("mounts only files that exist and depends only on services that exist", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0] as string;
        if (source.startsWith("./")) expect(existsSync(join(root, source)), `${name}: ${source}`).toBe(true);
        else expect(compose.volumes ?? {}, `${name}: named volume ${source}`).toHaveProperty(source);
      }
      const deps = Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {});
      for (const d of deps) expect(compose.services, `${name} depends on ${d}`).toHaveProperty(d);
    }
  });
});
