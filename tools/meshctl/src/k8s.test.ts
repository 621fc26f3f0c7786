import { execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { meshworkFiles } from "@meshwork/contracts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { ENVOY_CONFIG_PATH, renderEnvoyYaml } from "./envoy.js";
import {
  callsOf,
  K8S_DEV_SECRETS_DIR,
  natsPasswordVariable,
  postgresHost,
  postgresSecretName,
  renderK8s,
  secretName,
  writeK8sSecrets,
} from "./k8s.js";
import {
  allowed,
  checkUnknownFields,
  type K8sObject,
  kustomize,
  type Pod,
  podsOf,
  validateSchemas,
} from "./k8s-check.js";
import { findServices, type ServiceManifest } from "./services.js";

/**
 * infra/k8s, built by the real kustomize (`kubectl kustomize`) for each overlay and checked:
 * every object against the Kubernetes API schemas (and for unknown fields), then against the
 * code it deploys: every service of the repository (apps/*) has its workload, probes, limits,
 * PDB, HPA and NetworkPolicy; its variables are what its own config loader reads; the policies
 * let through exactly the paths the mesh uses; Envoy's ConfigMap is the rendered file.
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const meshctlDir = fileURLToPath(new URL("../", import.meta.url));
const POD_IP = "10.1.2.3";

type Env = Array<{
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    fieldRef?: { fieldPath: string };
  };
}>;

interface Build {
  objects: K8sObject[];
  get(kind: string, name: string): K8sObject;
  find(kind: string, name: string): K8sObject | undefined;
  all(kind: string): K8sObject[];
}

const build = (objects: K8sObject[]): Build => ({
  objects,
  find: (kind, name) => objects.find((o) => o.kind === kind && o.metadata.name === name),
  get(kind, name) {
    const o = this.find(kind, name);
    if (!o) throw new Error(`no ${kind} ${name} in the build`);
    return o;
  },
  all: (kind) => objects.filter((o) => o.kind === kind),
});

/** A generated object's name carries a content hash (`orders-secrets-5f8...`). */
const generated = (b: Build, kind: string, name: string) =>
  b.objects.find((o) => o.kind === kind && new RegExp(`^${name}-[a-z0-9]{10}$`).test(o.metadata.name));

describe("infra/k8s", () => {
  let services: ServiceManifest[];
  let dev: Build;
  let prod: Build;
  /** The dev overlay's Secrets, by generator name: key -> value. */
  let secrets: Map<string, Record<string, string>>;
  let work: string;

  beforeAll(() => {
    // Every process, the legacy monolith (strangler fig) among them.
    services = findServices(root);
    expect(services.map((m) => m.kind)).toContain("legacy");
    // The dev overlay reads its Secrets from git-ignored env files: build a copy of infra/ with
    // freshly made ones, as `meshctl k8s --secrets` writes them.
    work = mkdtempSync(join(tmpdir(), "mw-k8s-"));
    cpSync(join(root, "infra"), join(work, "infra"), {
      recursive: true,
      filter: (src) => !src.endsWith(".env"),
    });
    secrets = writeK8sSecrets(join(work, K8S_DEV_SECRETS_DIR), services);
    dev = build(kustomize(join(work, "infra/k8s/overlays/dev")));
    prod = build(kustomize(join(work, "infra/k8s/overlays/prod")));
  }, 120_000);
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  const overlays = () =>
    [
      ["dev", dev],
      ["prod", prod],
    ] as const;

  /** The value a container's variable has once the cluster resolved it (Secrets from dev's). */
  const resolve = (env: Env): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const e of env) {
      if (e.value !== undefined) out[e.name] = e.value;
      else if (e.valueFrom?.fieldRef?.fieldPath === "status.podIP") out[e.name] = POD_IP;
      else if (e.valueFrom?.fieldRef?.fieldPath === "metadata.name") out[e.name] = "pod-0";
      else if (e.valueFrom?.secretKeyRef) {
        const ref = e.valueFrom.secretKeyRef;
        const name = ref.name.replace(/-[a-z0-9]{10}$/, "");
        const value = secrets.get(name)?.[ref.key];
        if (value === undefined) throw new Error(`${e.name}: no key ${ref.key} in Secret ${ref.name}`);
        out[e.name] = value;
      } else throw new Error(`${e.name}: unresolvable`);
    }
    return out;
  };
  const containerOf = (o: K8sObject) => o.spec.template.spec.containers[0];
  const loaderOf = async (m: ServiceManifest) =>
    (
      (await import(pathToFileURL(join(m.dir, "dist/config.js")).href)) as {
        loadConfig: (env: Record<string, string>) => Record<string, unknown>;
      }
    ).loadConfig;

  it("builds every overlay with kubectl's kustomize, namespaced, labelled, with no leftover of another overlay", () => {
    for (const [name, b] of overlays()) {
      expect(b.objects.length, name).toBeGreaterThan(50);
      const ns = name === "dev" ? "meshwork-dev" : "meshwork";
      expect(b.get("Namespace", ns).metadata.labels?.["pod-security.kubernetes.io/enforce"]).toBe(
        "restricted",
      );
      for (const o of b.objects) {
        if (o.kind !== "Namespace")
          expect((o.metadata as { namespace?: string }).namespace, `${o.kind} ${o.metadata.name}`).toBe(ns);
        expect(o.metadata.labels?.["app.kubernetes.io/part-of"], `${o.kind} ${o.metadata.name}`).toBe(
          o.kind === "Namespace" ? undefined : "meshwork",
        );
      }
    }
    // Secrets are generated in dev only; prod takes them from the cluster's secret store.
    expect(dev.all("Secret").length).toBeGreaterThan(0);
    expect(prod.all("Secret")).toEqual([]);
  });

  it("is valid against the Kubernetes API schemas, with no unknown field, in every overlay", async () => {
    for (const [name, b] of overlays()) {
      expect(await validateSchemas(b.objects), name).toEqual([]);
      expect(checkUnknownFields(b.objects, meshctlDir), name).toEqual([]);
    }
  }, 120_000);

  it("would catch a broken manifest: a wrong type, a misspelt or misplaced field", async () => {
    const orders = () => structuredClone(dev.get("Deployment", "orders"));
    const d = orders();
    d.spec.template.spec.containers[0].resources.limits.cpu = { cores: 1 };
    const n = structuredClone(dev.get("NetworkPolicy", "orders"));
    n.spec.policyTypes = ["Inbound"];
    expect((await validateSchemas([d])).join("\n")).toMatch(/resources\/limits\/cpu/);
    expect((await validateSchemas([n])).join("\n")).toMatch(/policyTypes/);
    const misspelt = orders();
    misspelt.spec.template.spec.terminationGracePeriodSecond = 20;
    const misplaced = orders();
    misplaced.spec.template.spec.readinessProbe = misplaced.spec.template.spec.containers[0].readinessProbe;
    const probe = orders();
    probe.spec.template.spec.containers[0].readinessProbe.grpc.prot = 1;
    const fields = checkUnknownFields([misspelt, misplaced, probe], meshctlDir).join("\n");
    expect(fields).toMatch(/"terminationGracePeriodSecond"' does not exist in type 'PodSpec'/);
    expect(fields).toMatch(/"readinessProbe"' does not exist in type 'PodSpec'/);
    expect(fields).toMatch(/"prot"' does not exist in type 'GRPCAction'/);
  }, 120_000);

  it("commits the generated part of the base as `meshctl k8s` renders it (run it after adding a service)", () => {
    for (const [path, content] of renderK8s(services)) {
      expect(existsSync(join(root, path)), path).toBe(true);
      expect(readFileSync(join(root, path), "utf8"), path).toBe(content);
    }
  });

  it("runs every service of the repository with probes, limits, a PDB, an HPA, a ServiceAccount and a NetworkPolicy", async () => {
    expect(services.length).toBeGreaterThanOrEqual(6);
    for (const [overlay, b] of overlays()) {
      for (const m of services) {
        const where = `${overlay}: ${m.name}`;
        const d = b.get("Deployment", m.name);
        const pod = d.spec.template.spec;
        const labels = d.spec.template.metadata.labels as Record<string, string>;
        const c = containerOf(d);
        // The image the Dockerfile builds for apps/<dir>.
        expect(c.image, where).toMatch(new RegExp(`^meshwork/${basename(m.dir)}:`));
        expect(
          c.ports.map((p: { containerPort: number }) => p.containerPort),
          where,
        ).toContain(m.port);
        for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          if (m.kind === "service") {
            // Native gRPC probes: grpc.health.v1.Health/Check on the service's own port.
            expect(c[probe]?.grpc?.port, `${where} ${probe}`).toBe(m.port);
          } else if (m.kind === "legacy") {
            // The monolith's HTTP health route, on its own port.
            expect(c[probe]?.httpGet, `${where} ${probe}`).toMatchObject({ path: "/healthz", port: "http" });
            const named = c.ports.find((p: { name: string }) => p.name === "http");
            expect(named?.containerPort, where).toBe(m.port);
          } else {
            expect(c[probe]?.httpGet, `${where} ${probe}`).toMatchObject({ path: "/ready", port: "admin" });
          }
        }
        for (const kind of ["requests", "limits"]) {
          expect(c.resources?.[kind]?.cpu, `${where} ${kind}`).toBeDefined();
          expect(c.resources?.[kind]?.memory, `${where} ${kind}`).toBeDefined();
        }
        // Non-root, read-only root filesystem, no privilege.
        expect(pod.securityContext).toMatchObject({
          runAsNonRoot: true,
          seccompProfile: { type: "RuntimeDefault" },
        });
        expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
        expect(c.securityContext).toEqual({
          allowPrivilegeEscalation: false,
          readOnlyRootFilesystem: true,
          capabilities: { drop: ["ALL"] },
        });
        // Graceful shutdown: preStop, then the runtime's drain (its SHUTDOWN_GRACE_MS as loaded
        // from these variables), within the grace period.
        const config = (await loaderOf(m))(resolve(c.env)) as {
          runtime?: { shutdownGraceMs: number };
          shutdownGraceMs?: number;
        };
        // (The monolith has no drain setting: Fastify's close waits for requests in flight.)
        const drainMs =
          config.runtime?.shutdownGraceMs ?? config.shutdownGraceMs ?? (m.kind === "legacy" ? 0 : undefined);
        expect(drainMs, where).toBeGreaterThanOrEqual(m.kind === "legacy" ? 0 : 1);
        const preStop = c.lifecycle?.preStop?.exec?.command as string[];
        expect(preStop?.[0], where).toBe("sleep");
        const preStopS = Number(preStop[1]);
        expect(preStopS).toBeGreaterThan(0);
        expect(pod.terminationGracePeriodSeconds, where).toBeGreaterThan(
          preStopS + (drainMs as number) / 1000,
        );

        const sa = b.get("ServiceAccount", pod.serviceAccountName);
        expect(sa.automountServiceAccountToken).toBe(false);
        const pdb = b.get("PodDisruptionBudget", m.name);
        expect(pdb.spec.selector.matchLabels).toEqual(d.spec.selector.matchLabels);
        expect(pdb.spec.maxUnavailable ?? pdb.spec.minAvailable, where).toBeDefined();
        const hpa = b.get("HorizontalPodAutoscaler", m.name);
        expect(hpa.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "Deployment", name: m.name });
        expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(overlay === "prod" ? 3 : 1);
        // The autoscaler owns the count: a Deployment with replicas would fight it on each apply.
        expect(d.spec.replicas, where).toBeUndefined();
        const np = b.get("NetworkPolicy", m.name);
        expect(np.spec.podSelector.matchLabels).toEqual(d.spec.selector.matchLabels);
        expect(np.spec.policyTypes).toEqual(["Ingress", "Egress"]);
        for (const [k, v] of Object.entries(d.spec.selector.matchLabels)) expect(labels[k]).toBe(v);
        // Headless: Envoy and the registry see pods, not a virtual IP.
        const svc = b.get("Service", m.name);
        expect(svc.spec.clusterIP, where).toBe("None");
        expect(svc.spec.selector).toEqual(d.spec.selector.matchLabels);
        expect(svc.spec.ports.map((p: { port: number }) => p.port)).toContain(m.port);
        // Prometheus finds its metrics from the annotations (the monolith has none to scrape).
        const a = d.spec.template.metadata.annotations;
        if (m.kind === "legacy") {
          expect(a, where).toBeUndefined();
          continue;
        }
        expect(a["prometheus.io/scrape"]).toBe("true");
        expect(Number(a["prometheus.io/port"])).toBe(m.kind === "gateway" ? m.adminPort : m.port);
        expect(a["prometheus.io/path"]).toBe(m.kind === "gateway" ? "/stats/prometheus" : "/metrics");
      }
    }
  });

  it("configures each service with variables its own config loader reads, each one with an effect", async () => {
    for (const [overlay, b] of overlays()) {
      for (const m of services) {
        const where = `${overlay}: ${m.name}`;
        const loadConfig = await loaderOf(m);
        const env = resolve(containerOf(b.get("Deployment", m.name)).env);
        const c = loadConfig(env) as {
          runtime?: { host: string; port: number; tracesExporter: string; otlpEndpoint?: string };
          host?: string;
          port?: number;
          tracesExporter?: string;
          otlpEndpoint?: string;
          db?: { url?: string };
          events?: {
            natsUrl: string;
            natsCredentials?: { user: string; password: string };
            streamReplicas?: number;
          };
          discovery?: { advertiseHost?: string; natsUrl?: string; replicas?: number; mode?: string };
          jwksUrl?: string;
          adminHost?: string;
          databaseUrl?: string;
          tokenSecret?: string;
          strangler?: { legacyUrl?: string };
        };
        const runtime = c.runtime ?? c;
        // The monolith exports no traces; the rest do.
        expect(runtime, where).toMatchObject({
          host: "0.0.0.0",
          port: m.port,
          ...(m.kind === "legacy"
            ? {}
            : { tracesExporter: "otlp", otlpEndpoint: "http://otel-collector:4318" }),
        });
        expect(b.get("Service", "otel-collector").spec.ports.map((p: { port: number }) => p.port)).toContain(
          4318,
        );
        // A misspelt or dead variable would be silently ignored: each must change the config
        // when removed (or, when it holds the loader's default, when given another value).
        const effect = (name: string) =>
          [
            undefined,
            /^\d+$/.test(env[name] as string) ? String(Number(env[name]) + 1) : `${env[name]}x`,
          ].some((variant) => {
            const changed = { ...env };
            if (variant === undefined) delete changed[name];
            else changed[name] = variant;
            try {
              return !isDeepStrictEqual(loadConfig(changed), c);
            } catch {
              return true; // refused by the loader: it reads it
            }
          });
        for (const name of Object.keys(env)) {
          expect(effect(name), `${where}: ${name} has no effect on the loaded config`).toBe(true);
        }
        if (m.database) {
          expect(c.db?.url ?? c.databaseUrl, where).toBe(env.DATABASE_URL);
          const u = new URL(env.DATABASE_URL as string);
          // Its own Postgres, database and role; the password is the one that Postgres gives the role.
          expect(u.hostname).toBe(postgresHost(m.name));
          expect(u.username).toBe(m.name);
          expect(u.pathname).toBe(`/${m.name}`);
          expect(decodeURIComponent(u.password)).toBe(
            secrets.get(postgresSecretName(m.name))?.SERVICE_DB_PASSWORD,
          );
          const pg = b.get("StatefulSet", postgresHost(m.name));
          const pgEnv = resolve(containerOf(pg).env);
          expect(pgEnv.SERVICE_NAME).toBe(m.name);
          expect(pgEnv.SERVICE_DB_PASSWORD).toBe(decodeURIComponent(u.password));
          expect(b.get("Service", postgresHost(m.name)).spec.ports[0].port).toBe(Number(u.port || 5432));
        } else {
          expect(env.DATABASE_URL, where).toBeUndefined();
        }
        if (c.events) {
          expect(c.events.natsUrl).toBe("nats://nats:4222");
          expect(c.events.natsCredentials?.user).toBe(m.name);
        }
        // The password NATS holds for this user is the one the service presents.
        const nats = resolve(containerOf(b.get("StatefulSet", "nats")).env);
        expect(nats[natsPasswordVariable(m.name)], where).toBe(env.NATS_PASSWORD);
        if (m.kind === "service") {
          expect(c.discovery?.advertiseHost, where).toBe(POD_IP);
          if (overlay === "prod") {
            if (c.events) expect(c.events.streamReplicas, where).toBe(3);
            expect(c.discovery?.replicas, where).toBe(3);
          }
        } else if (m.kind === "legacy") {
          // Its CDC relay and reverse sync run (NATS configured), its LEGACY stream R3 in prod,
          // and its session tokens outlive a pod (a secret, not one made at start).
          expect(c.events, where).toBeDefined();
          if (overlay === "prod") expect(c.events?.streamReplicas, where).toBe(3);
          expect(c.tokenSecret, where).toBe(secrets.get(secretName(m.name))?.LEGACY_TOKEN_SECRET);
          expect(env.IDENTITY_KEY, where).toBeUndefined();
          // Users verifies the monolith's sessions with the same secret (ExchangeLegacyToken).
          const users = resolve(containerOf(b.get("Deployment", "users")).env);
          expect(users.LEGACY_TOKEN_SECRET, where).toBe(c.tokenSecret);
        } else {
          const legacy = services.find((s) => s.kind === "legacy");
          expect(c.strangler?.legacyUrl, where).toBe(`http://${legacy?.name}:${legacy?.port}`);
          expect(c.discovery).toMatchObject({ mode: "registry", natsUrl: "nats://nats:4222" });
          const users = services.find((s) => s.name === "users");
          expect(c.jwksUrl).toBe(`http://users:${users?.port}/.well-known/jwks.json`);
          expect(c.adminHost).toBe("0.0.0.0");
        }
      }
    }
  });

  it("lets through exactly the paths the mesh uses (NetworkPolicies, evaluated as a CNI does)", () => {
    for (const [overlay, b] of overlays()) {
      const policies = b.all("NetworkPolicy");
      const pods = podsOf(b.objects);
      const pod = (name: string) => pods.find((p) => p.name === name) as Pod;
      const reachable = (from: Pod) =>
        pods.flatMap((to) =>
          to.name === from.name
            ? []
            : to.ports.filter((p) => allowed(policies, from, to, p)).map((p) => `${to.name}:${p.port}`),
        );
      const reachers = (to: Pod, port: number) =>
        pods
          .filter((from) => from.name !== to.name && allowed(policies, from, to, { port }))
          .map((p) => p.name);
      const edges = services.filter((s) => s.kind === "gateway").map((s) => s.name);
      for (const m of services) {
        const where = `${overlay}: ${m.name}`;
        const self = pod(m.name);
        const calls = callsOf(m);
        if (m.kind === "service") {
          // Its RPC port: the edges, the services that call it, and Prometheus (/metrics is there).
          const callers = services.filter((s) => callsOf(s).includes(m.name)).map((s) => s.name);
          expect(new Set(reachers(self, m.port)), where).toEqual(
            new Set(["envoy", ...edges, ...callers, "prometheus"]),
          );
          // From it: its own database, NATS, the collector, and the services it calls; nothing else.
          expect(new Set(reachable(self)), where).toEqual(
            new Set([
              ...(m.database ? [`${postgresHost(m.name)}:5432`] : []),
              "nats:4222",
              "otel-collector:4318",
              ...calls.map((c) => `${c}:${services.find((s) => s.name === c)?.port}`),
            ]),
          );
        }
        if (m.kind === "legacy") {
          // The monolith: the edges on its HTTP port (the strangler routes); from it, its
          // database and NATS only.
          expect(new Set(reachers(self, m.port)), where).toEqual(new Set(["envoy", ...edges]));
          expect(new Set(reachable(self)), where).toEqual(
            new Set([`${postgresHost(m.name)}:5432`, "nats:4222"]),
          );
        }
        if (m.database) {
          expect(reachers(pod(postgresHost(m.name)), 5432), where).toEqual([m.name]);
        }
      }
      // The east-west calls found in the code are there (orders' saga calls inventory and payments).
      expect(callsOf(services.find((s) => s.name === "orders") as ServiceManifest)).toEqual([
        "inventory",
        "payments",
      ]);
      // NATS: its clients on 4222, its peers on the cluster port; the collector: OTLP from the mesh.
      expect(new Set(reachers(pod("nats"), 4222))).toEqual(new Set(services.map((s) => s.name)));
      expect(reachers(pod("nats"), 6222)).toEqual([]); // one pod stands for the three: its peers are itself
      expect(allowed(policies, pod("nats"), pod("nats"), { port: 6222 })).toBe(true);
      expect(new Set(reachers(pod("otel-collector"), 4318))).toEqual(
        new Set(services.filter((s) => s.kind !== "legacy").map((s) => s.name)),
      );
      expect(reachers(pod("jaeger"), 4317)).toEqual(["otel-collector"]);
      // Envoy's listener is open to clients; its admin proxy to Prometheus only.
      expect(reachers(pod("envoy"), 9902)).toEqual(["prometheus"]);
    }
  });

  it("mounts Envoy's config from a ConfigMap equal to the file `meshctl envoy` renders, balancing over headless Services", () => {
    const committed = readFileSync(join(root, ENVOY_CONFIG_PATH), "utf8");
    expect(committed).toBe(renderEnvoyYaml({ files: meshworkFiles, services: findServices(root) }));
    for (const [overlay, b] of overlays()) {
      const cm = generated(b, "ConfigMap", "envoy-config");
      expect(cm?.data?.["envoy.yaml"], overlay).toBe(committed);
      const d = b.get("Deployment", "envoy");
      const volume = d.spec.template.spec.volumes.find((v: { configMap?: { name: string } }) => v.configMap);
      expect(volume.configMap.name).toBe(cm?.metadata.name);
      const c = containerOf(d);
      const mount = c.volumeMounts.find((v: { name: string }) => v.name === volume.name);
      expect(`${mount.mountPath}/envoy.yaml`).toBe(c.args[c.args.indexOf("-c") + 1]);
      const config = parse(committed) as {
        static_resources: {
          listeners: Array<{ name: string; address: { socket_address: { port_value: number } } }>;
          clusters: Array<{
            name: string;
            type: string;
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
      for (const cluster of config.static_resources.clusters.filter((x) => x.type === "STRICT_DNS")) {
        for (const e of cluster.load_assignment.endpoints.flatMap((x) => x.lb_endpoints)) {
          const { address, port_value } = e.endpoint.address.socket_address;
          const svc = b.get("Service", address);
          expect(svc.spec.clusterIP, `${overlay}: ${cluster.name} -> ${address}`).toBe("None");
          expect(svc.spec.ports.map((p: { port: number }) => p.port)).toContain(port_value);
        }
      }
      const ports = (name: string) =>
        config.static_resources.listeners.find((l) => l.name === name)?.address.socket_address.port_value;
      const containerPort = (name: string) =>
        c.ports.find((p: { name: string }) => p.name === name)?.containerPort as number;
      expect(containerPort("http")).toBe(ports("edge"));
      expect(containerPort("admin-proxy")).toBe(ports("admin_proxy"));
      expect(c.readinessProbe.httpGet).toEqual({ path: "/ready", port: "admin-proxy" });
      expect(b.get("Service", "envoy").spec.ports[0].port).toBe(ports("edge"));
    }
    expect(prod.get("Service", "envoy").spec.type).toBe("LoadBalancer");
  });

  it("runs NATS JetStream as a 3-node cluster on volumes, fsync'd on every write, streams R3 in prod", () => {
    for (const [overlay, b] of overlays()) {
      const sts = b.get("StatefulSet", "nats");
      expect(sts.spec.replicas).toBe(3);
      expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe("data");
      const mounts = containerOf(sts).volumeMounts as Array<{ name: string; mountPath: string }>;
      const conf = generated(b, "ConfigMap", "nats-config")?.data?.["nats.conf"] as string;
      expect(conf, overlay).toBeDefined();
      const store = /store_dir: "([^"]+)"/.exec(conf)?.[1];
      expect(mounts).toContainEqual({ name: "data", mountPath: store });
      expect(conf).toMatch(/jetstream \{[^}]*sync_interval: always/);
      expect(conf).toContain("server_name: $POD_NAME");
      const headless = b.get("Service", sts.spec.serviceName);
      expect(headless.spec.clusterIP).toBe("None");
      expect(headless.spec.publishNotReadyAddresses).toBe(true);
      for (let i = 0; i < 3; i++) expect(conf).toContain(`nats://nats-${i}.${sts.spec.serviceName}:6222`);
      // Every variable the configuration reads is set on the pod.
      const env = resolve(containerOf(sts).env);
      for (const v of conf.matchAll(/:\s*\$([A-Z_][A-Z0-9_]*)/g))
        expect(env, `${overlay}: $${v[1]}`).toHaveProperty([v[1] as string]);
      expect(b.get("PodDisruptionBudget", "nats").spec.maxUnavailable).toBe(1);
    }
    for (const m of services.filter((s) => s.kind === "service")) {
      const env = containerOf(prod.get("Deployment", m.name)).env as Env;
      expect(env.find((e) => e.name === "STREAM_REPLICAS")?.value, m.name).toBe("3");
      expect(
        (containerOf(dev.get("Deployment", m.name)).env as Env).some((e) => e.name === "STREAM_REPLICAS"),
      ).toBe(false);
    }
  });

  it("keeps every credential in a Secret: none in a ConfigMap or a literal variable", () => {
    const values = [...secrets.values()].flatMap((s) => Object.values(s)).filter((v) => v.length >= 16);
    expect(values.length).toBeGreaterThan(10);
    for (const [overlay, b] of overlays()) {
      const text = b
        .all("ConfigMap")
        .map((c) => JSON.stringify(c.data))
        .join("\n");
      for (const v of values) expect(text.includes(v), overlay).toBe(false);
      for (const w of [...b.all("Deployment"), ...b.all("StatefulSet")]) {
        for (const c of w.spec.template.spec.containers) {
          for (const e of (c.env ?? []) as Env) {
            if (/PASSWORD|_KEY$|TOKEN|SECRET$|DATABASE_URL|IDENTITY_TRUST/.test(e.name)) {
              expect(e.value, `${overlay}: ${w.metadata.name} ${e.name}`).toBeUndefined();
              expect(e.valueFrom?.secretKeyRef, `${overlay}: ${w.metadata.name} ${e.name}`).toBeDefined();
            }
          }
        }
      }
    }
    // prod references the same Secrets (names and keys) the dev overlay generates.
    for (const w of [...prod.all("Deployment"), ...prod.all("StatefulSet")]) {
      for (const c of w.spec.template.spec.containers) {
        for (const e of (c.env ?? []) as Env) {
          const ref = e.valueFrom?.secretKeyRef;
          if (ref) expect(secrets.get(ref.name)?.[ref.key], `${w.metadata.name} ${e.name}`).toBeDefined();
        }
      }
    }
  });

  it("has a Postgres per service with a database, run as non-root on its own volume", () => {
    for (const m of services.filter((s) => s.database)) {
      const sts = dev.get("StatefulSet", postgresHost(m.name));
      expect(sts.spec.replicas).toBe(1);
      expect(sts.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
      const init = generated(dev, "ConfigMap", "postgres-init")?.data?.["10-meshwork.sh"] as string;
      expect(init).toContain("CREATE ROLE :\"name\" LOGIN PASSWORD :'password';");
      expect(init).toContain('REVOKE CONNECT ON DATABASE :"name" FROM PUBLIC;');
      expect(
        prod.get("StatefulSet", postgresHost(m.name)).spec.volumeClaimTemplates[0].spec.resources.requests
          .storage,
      ).toBe("50Gi");
    }
    // No other database: the services without one have no Postgres.
    expect(dev.all("StatefulSet").filter((s) => s.metadata.name.endsWith("-postgres")).length).toBe(
      services.filter((s) => s.database).length,
    );
  });

  it("runs the observability stack from the repository's files: collector, Prometheus (checked by promtool), Grafana, Jaeger", () => {
    for (const [overlay, b] of overlays()) {
      expect(generated(b, "ConfigMap", "otel-collector-config")?.data?.["collector.yaml"], overlay).toBe(
        readFileSync(join(root, "infra/otel/collector.yaml"), "utf8"),
      );
      const dashboards = generated(b, "ConfigMap", "grafana-dashboards")?.data ?? {};
      for (const f of ["event-pipeline.json", "gateway.json", "mesh-overview.json", "sagas-orders.json"]) {
        expect(dashboards[f], f).toBe(readFileSync(join(root, "infra/grafana/dashboards", f), "utf8"));
      }
      const rules = generated(b, "ConfigMap", "prometheus-rules")?.data ?? {};
      expect(Object.keys(rules).sort()).toEqual(["alerts.yml", "recording.yml"]);
      for (const name of ["otel-collector", "jaeger", "grafana"]) b.get("Deployment", name);
      b.get("StatefulSet", "prometheus");
    }
    // Pods of its own namespace, by annotation.
    const config = parse(readFileSync(join(root, "infra/k8s/base/observability/prometheus.yml"), "utf8")) as {
      scrape_configs: Array<Record<string, unknown>>;
    };
    const pods = config.scrape_configs.find((j) => j.job_name === "meshwork-pods") as {
      kubernetes_sd_configs: unknown;
      relabel_configs: Array<{ source_labels: string[]; target_label?: string }>;
    };
    expect(pods.kubernetes_sd_configs).toEqual([{ role: "pod", namespaces: { own_namespace: true } }]);
    const relabelled = (label: string) =>
      pods.relabel_configs.find((r) =>
        r.source_labels.includes(`__meta_kubernetes_pod_annotation_prometheus_io_${label}`),
      );
    expect(relabelled("scrape")).toBeDefined();
    expect(relabelled("path")?.target_label).toBe("__metrics_path__");
    expect(relabelled("port")?.target_label).toBe("__address__");
    expect(pods.relabel_configs.find((r) => r.target_label === "service")?.source_labels).toEqual([
      "__meta_kubernetes_pod_label_app_kubernetes_io_name",
    ]);
    // Prometheus' own checker on the rest (relabel regexes, labels, jobs). Debian's promtool is
    // built without the Kubernetes discovery, so that one block is swapped for file discovery.
    const dir = mkdtempSync(join(tmpdir(), "mw-prom-"));
    try {
      const swapped = {
        ...config,
        scrape_configs: config.scrape_configs.map(({ kubernetes_sd_configs, ...j }) =>
          kubernetes_sd_configs ? { ...j, file_sd_configs: [{ files: ["targets/*.json"] }] } : j,
        ),
      };
      writeFileSync(join(dir, "prometheus.yml"), stringify(swapped));
      const out = execFileSync(
        process.env.PROMTOOL ?? "promtool",
        ["check", "config", join(dir, "prometheus.yml")],
        {
          encoding: "utf8",
        },
      );
      expect(out).toMatch(/SUCCESS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
