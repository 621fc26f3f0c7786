import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DEFAULT_BUCKET } from "@meshwork/discovery";
import { generateIdentityKey, privateKeyFrom, publicKeyText } from "@meshwork/runtime";
import { stringify } from "yaml";
import { DEFAULT_EXT_AUTHZ } from "./envoy.js";
import { newLegacySyncKey } from "./identity-keys.js";
import {
  ADMIN_USER,
  type ConfigUser,
  gatewayPermissions,
  renderNatsConfig,
  servicePermissions,
} from "./nats-auth.js";
import type { ServiceManifest } from "./services.js";

/** The kustomize base; `meshctl k8s` renders the parts of it that follow from the repository. */
export const K8S_BASE = "infra/k8s/base";
/** The generated per-service manifests (one file each) and their kustomization. */
export const K8S_SERVICES_DIR = `${K8S_BASE}/services`;
/** The NATS cluster's configuration (users, permissions, cluster routes; passwords from env). */
export const K8S_NATS_CONFIG_PATH = `${K8S_BASE}/nats/nats.conf`;

/** The NATS StatefulSet and its Services (their env lists every process's password). */
export const K8S_NATS_MANIFEST_PATH = `${K8S_BASE}/nats/nats.yaml`;
/** The dev overlay's Secrets, generated from owner-only env files (`meshctl k8s --secrets`). */
export const K8S_DEV_SECRETS_DIR = "infra/k8s/overlays/dev/secrets";
export const K8S_DEV_SECRETS_KUSTOMIZATION = `${K8S_DEV_SECRETS_DIR}/kustomization.yaml`;

/** NATS cluster size: three, so JetStream keeps a quorum (and R3 streams) with one node down. */
export const NATS_NODES = 3;
/**
 * Seconds between SIGTERM's preStop and the signal itself: the endpoint leaves the Service and
 * Envoy's DNS refresh (STRICT_DNS, 5 s by default) before the process stops accepting calls.
 */
export const PRE_STOP_SECONDS = 5;
/** After the runtime's drain (SHUTDOWN_GRACE_MS) and preStop: time to flush spans and exit. */
export const SHUTDOWN_MARGIN_SECONDS = 5;
/** The runtime's default SHUTDOWN_GRACE_MS; the manifests leave it at its default. */
export const RUNTIME_SHUTDOWN_GRACE_MS = 10_000;

const NAME = "app.kubernetes.io/name";
const COMPONENT = "app.kubernetes.io/component";
/** Pods with this label may reach NATS (the NetworkPolicy of NATS selects on it). */
export const NATS_CLIENT_LABEL = "meshwork.dev/nats-client";
/** Pods with this label may send spans to the collector. */
export const OTLP_CLIENT_LABEL = "meshwork.dev/otlp-client";

/** The Secret holding one process's credentials (identity key, NATS password, database URL). */
export const secretName = (service: string) => `${service}-secrets`;
/** The Secret of one service's Postgres (superuser and the service role's password). */
export const postgresSecretName = (service: string) => `${service}-postgres`;
/** The Secret with every process's public key (`IDENTITY_TRUST`). */
export const TRUST_SECRET = "meshwork-identity-trust";
/** meshctl's own NATS user (the admin: `status`, `events dlq`). */
export const ADMIN_SECRET = "meshctl-nats";
/** The users service's one-time bootstrap secret, mounted as a file. */
export const BOOTSTRAP_SECRET = "users-bootstrap";
const BOOTSTRAP_FILE_DIR = "/run/secrets";
const BOOTSTRAP_FILE = "users_bootstrap_secret";

/** Host name of one service's Postgres (a StatefulSet per service, behind its own Service). */
export const postgresHost = (service: string) => `${service}-postgres`;

/**
 * The services a service calls (east-west), read from its source: each `transport("<name>"`
 * outside tests, the discovery client's method or a local helper of that name wrapping it (as
 * orders' `upstreamClients` does). The NetworkPolicies open exactly these paths.
 */
export function callsOf(manifest: ServiceManifest): string[] {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.isDirectory()) walk(path);
      else if (e.name.endsWith(".ts") && !/\.test\.ts$/.test(e.name)) {
        for (const m of readFileSync(path, "utf8").matchAll(/(?<![\w$])transport\(\s*"([a-z0-9-]+)"/g)) {
          found.add(m[1] as string);
        }
      }
    }
  };
  const src = join(manifest.dir, "src");
  if (existsSync(src)) walk(src);
  return [...found].sort();
}

const secretEnv = (name: string, secret: string, key = name) => ({
  name,
  valueFrom: { secretKeyRef: { name: secret, key } },
});

/**
 * The legacy monolith's variables: its database, its NATS user (CDC relay, reverse sync) and its
 * session-token secret. It has no mesh identity and exports no traces.
 */
function legacyEnv(m: ServiceManifest): unknown[] {
  return [
    { name: "HOST", value: "0.0.0.0" },
    { name: "PORT", value: String(m.port) },
    secretEnv("DATABASE_URL", secretName(m.name)),
    { name: "NATS_URL", value: "nats://nats:4222" },
    { name: "NATS_USER", value: m.name },
    secretEnv("NATS_PASSWORD", secretName(m.name)),
    secretEnv("LEGACY_TOKEN_SECRET", secretName(m.name)),
    // Seals the users' password hashes, emails and names it publishes on LEGACY_USERS.
    secretEnv("LEGACY_SYNC_KEY", secretName(m.name)),
  ];
}

function env(m: ServiceManifest, services: readonly ServiceManifest[]): unknown[] {
  if (m.kind === "legacy") return legacyEnv(m);
  const users = services.find((s) => s.name === "users");
  const legacy = services.find((s) => s.kind === "legacy");
  const common: unknown[] = [
    { name: "HOST", value: "0.0.0.0" },
    { name: "PORT", value: String(m.port) },
    { name: "NATS_URL", value: "nats://nats:4222" },
    { name: "NATS_USER", value: m.name },
    secretEnv("NATS_PASSWORD", secretName(m.name)),
    secretEnv("IDENTITY_KEY", secretName(m.name)),
    secretEnv("IDENTITY_TRUST", TRUST_SECRET),
    { name: "OTEL_TRACES_EXPORTER", value: "otlp" },
    { name: "OTEL_EXPORTER_OTLP_ENDPOINT", value: "http://otel-collector:4318" },
  ];
  if (m.kind === "gateway") {
    return [
      ...common,
      // Probes and Prometheus reach the admin listener on the pod's address.
      { name: "ADMIN_HOST", value: "0.0.0.0" },
      { name: "JWKS_URL", value: `http://users:${users?.port ?? 50051}/.well-known/jwks.json` },
      // Envoy's ext_authz filter asks here: the gateway's rules and the signed identity assertion.
      { name: "EXT_AUTHZ_PORT", value: String(DEFAULT_EXT_AUTHZ.port) },
      // The monolith behind the strangler routes (weights and shadow: meshctl strangler).
      ...(legacy ? [{ name: "STRANGLER_LEGACY_URL", value: `http://${legacy.name}:${legacy.port}` }] : []),
    ];
  }
  return [
    ...common,
    // Each pod announces its own address in the registry: callers balance over pods, not a VIP.
    { name: "ADVERTISE_HOST", valueFrom: { fieldRef: { fieldPath: "status.podIP" } } },
    ...(m.database ? [secretEnv("DATABASE_URL", secretName(m.name))] : []),
    ...(m.name === "users"
      ? [
          { name: "USERS_BOOTSTRAP_SECRET_FILE", value: `${BOOTSTRAP_FILE_DIR}/${BOOTSTRAP_FILE}` },
          // Seals the JWT signing keys in its database.
          secretEnv("USERS_KEY_ENCRYPTION_KEY", secretName(m.name)),
          // ExchangeLegacyToken checks the monolith's session tokens with the monolith's secret.
          ...(legacy ? [secretEnv("LEGACY_TOKEN_SECRET", secretName(legacy.name))] : []),
          // Opens the legacy users' sealed password hashes, emails and names (the monolith's key ring).
          ...(legacy ? [secretEnv("LEGACY_SYNC_KEY", secretName(legacy.name))] : []),
        ]
      : []),
  ];
}

const labels = (name: string, component: string) => ({
  [NAME]: name,
  [COMPONENT]: component,
});

/** Pod and container security: non-root, read-only root, no privilege, default seccomp. */
export const podSecurity = (uid: number) => ({
  runAsNonRoot: true,
  runAsUser: uid,
  runAsGroup: uid,
  fsGroup: uid,
  seccompProfile: { type: "RuntimeDefault" },
});
export const containerSecurity = {
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ["ALL"] },
};

const dnsEgress = {
  to: [{ namespaceSelector: {}, podSelector: { matchLabels: { "k8s-app": "kube-dns" } } }],
  ports: [
    { protocol: "UDP", port: 53 },
    { protocol: "TCP", port: 53 },
  ],
};
const podsNamed = (...names: string[]) =>
  names.length === 1
    ? { podSelector: { matchLabels: { [NAME]: names[0] } } }
    : { podSelector: { matchExpressions: [{ key: NAME, operator: "In", values: names }] } };

function serviceObjects(m: ServiceManifest, services: readonly ServiceManifest[]): unknown[] {
  const gateway = m.kind === "gateway";
  // The monolith is a service of the deployment too (prod's patches of services apply to it).
  const legacy = m.kind === "legacy";
  const component = gateway ? "edge" : "service";
  const l = labels(m.name, component);
  const rpcPort = m.port;
  const metricsPort = gateway ? (m.adminPort ?? 9901) : m.port;
  const grpcProbe = (extra: Record<string, number>) => ({ grpc: { port: rpcPort }, ...extra });
  const readyProbe = (extra: Record<string, number>) => ({
    httpGet: { path: "/ready", port: "admin" },
    ...extra,
  });
  const healthProbe = (extra: Record<string, number>) => ({
    httpGet: { path: "/healthz", port: "http" },
    ...extra,
  });
  const probe = gateway ? readyProbe : legacy ? healthProbe : grpcProbe;
  const callers = services.filter((s) => s.kind === "service" && callsOf(s).includes(m.name));
  const callees = callsOf(m);

  const volumes: unknown[] = [{ name: "tmp", emptyDir: { sizeLimit: "64Mi" } }];
  const mounts: unknown[] = [{ name: "tmp", mountPath: "/tmp" }];
  if (m.name === "users") {
    volumes.push({
      name: "bootstrap",
      secret: { secretName: BOOTSTRAP_SECRET, defaultMode: 0o400, optional: true },
    });
    mounts.push({ name: "bootstrap", mountPath: BOOTSTRAP_FILE_DIR, readOnly: true });
  }

  const deployment = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: m.name, labels: l },
    spec: {
      // No `replicas`: the HorizontalPodAutoscaler owns the count (min in the overlay).
      revisionHistoryLimit: 5,
      selector: { matchLabels: { [NAME]: m.name } },
      strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: {
          // The monolith exports neither metrics nor spans (the strangler's figures are the gateway's).
          labels: { ...l, [NATS_CLIENT_LABEL]: "true", ...(legacy ? {} : { [OTLP_CLIENT_LABEL]: "true" }) },
          ...(legacy
            ? {}
            : {
                annotations: {
                  "prometheus.io/scrape": "true",
                  "prometheus.io/port": String(metricsPort),
                  "prometheus.io/path": gateway ? "/stats/prometheus" : "/metrics",
                },
              }),
        },
        spec: {
          serviceAccountName: m.name,
          automountServiceAccountToken: false,
          // preStop + the runtime's drain (SHUTDOWN_GRACE_MS) + time to flush spans and exit.
          terminationGracePeriodSeconds:
            PRE_STOP_SECONDS + RUNTIME_SHUTDOWN_GRACE_MS / 1000 + SHUTDOWN_MARGIN_SECONDS,
          securityContext: podSecurity(1000),
          topologySpreadConstraints: [
            {
              maxSkew: 1,
              topologyKey: "kubernetes.io/hostname",
              whenUnsatisfiable: "ScheduleAnyway",
              labelSelector: { matchLabels: { [NAME]: m.name } },
            },
            {
              maxSkew: 1,
              topologyKey: "topology.kubernetes.io/zone",
              whenUnsatisfiable: "ScheduleAnyway",
              labelSelector: { matchLabels: { [NAME]: m.name } },
            },
          ],
          containers: [
            {
              name: m.name,
              image: `meshwork/${m.name}:latest`,
              imagePullPolicy: "IfNotPresent",
              ports: [
                { name: gateway || legacy ? "http" : "grpc", containerPort: rpcPort, protocol: "TCP" },
                ...(gateway
                  ? [
                      { name: "admin", containerPort: metricsPort, protocol: "TCP" },
                      { name: "authz", containerPort: DEFAULT_EXT_AUTHZ.port, protocol: "TCP" },
                    ]
                  : []),
              ],
              env: env(m, services),
              resources: {
                requests: { cpu: "100m", memory: "192Mi" },
                limits: { cpu: "1", memory: "512Mi" },
              },
              // Migrations run before the service answers SERVING: give the first start time.
              startupProbe: probe({ periodSeconds: 2, failureThreshold: 60, timeoutSeconds: 2 }),
              readinessProbe: probe({ periodSeconds: 5, failureThreshold: 2, timeoutSeconds: 2 }),
              // Lenient: NOT_SERVING while its database is away must not restart it (readiness
              // takes it out of the endpoints meanwhile).
              livenessProbe: probe({ periodSeconds: 10, failureThreshold: 6, timeoutSeconds: 3 }),
              lifecycle: { preStop: { exec: { command: ["sleep", String(PRE_STOP_SECONDS)] } } },
              securityContext: containerSecurity,
              volumeMounts: mounts,
            },
          ],
          volumes,
        },
      },
    },
  };

  const service = {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: m.name, labels: l },
    spec: {
      // Headless: the name resolves to every ready pod, so Envoy (STRICT_DNS) balances over pods
      // and an HTTP/2 connection is never pinned to one behind a virtual IP.
      clusterIP: "None",
      selector: { [NAME]: m.name },
      ports: [
        {
          name: gateway || legacy ? "http" : "grpc",
          port: rpcPort,
          targetPort: gateway || legacy ? "http" : "grpc",
          ...(gateway || legacy ? {} : { appProtocol: "kubernetes.io/h2c" }),
        },
        ...(gateway
          ? [
              { name: "admin", port: metricsPort, targetPort: "admin" },
              {
                name: "authz",
                port: DEFAULT_EXT_AUTHZ.port,
                targetPort: "authz",
                appProtocol: "kubernetes.io/h2c",
              },
            ]
          : []),
      ],
    },
  };

  const edges = services.filter((s) => s.kind === "gateway").map((s) => s.name);
  const ingress: unknown[] = gateway
    ? [
        { ports: [{ protocol: "TCP", port: rpcPort }] },
        { from: [podsNamed("prometheus")], ports: [{ protocol: "TCP", port: metricsPort }] },
        // Only Envoy asks the ext_authz server.
        { from: [podsNamed("envoy")], ports: [{ protocol: "TCP", port: DEFAULT_EXT_AUTHZ.port }] },
      ]
    : [
        {
          // The edges, and the services that call this one (its contract's `service` methods).
          from: [podsNamed("envoy", ...edges, ...callers.map((c) => c.name))],
          ports: [{ protocol: "TCP", port: rpcPort }],
        },
        // GET /metrics is on the RPC port (the monolith has none).
        ...(legacy ? [] : [{ from: [podsNamed("prometheus")], ports: [{ protocol: "TCP", port: rpcPort }] }]),
      ];
  const egress: unknown[] = [
    dnsEgress,
    { to: [podsNamed("nats")], ports: [{ protocol: "TCP", port: 4222 }] },
    ...(legacy ? [] : [{ to: [podsNamed("otel-collector")], ports: [{ protocol: "TCP", port: 4318 }] }]),
  ];
  if (m.database) {
    egress.push({ to: [podsNamed(postgresHost(m.name))], ports: [{ protocol: "TCP", port: 5432 }] });
  }
  // The gateway's strangler routes reach the monolith too.
  const upstreams = gateway
    ? services.filter((s) => s.kind === "service" || s.kind === "legacy")
    : services.filter((s) => callees.includes(s.name));
  for (const u of upstreams) {
    egress.push({ to: [podsNamed(u.name)], ports: [{ protocol: "TCP", port: u.port }] });
  }
  const networkPolicy = {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { name: m.name, labels: l },
    spec: {
      podSelector: { matchLabels: { [NAME]: m.name } },
      policyTypes: ["Ingress", "Egress"],
      ingress,
      egress,
    },
  };

  const objects: unknown[] = [
    {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: m.name, labels: l },
      automountServiceAccountToken: false,
    },
    deployment,
    service,
    {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: m.name, labels: l },
      spec: {
        maxUnavailable: 1,
        selector: { matchLabels: { [NAME]: m.name } },
        unhealthyPodEvictionPolicy: "AlwaysAllow",
      },
    },
    {
      apiVersion: "autoscaling/v2",
      kind: "HorizontalPodAutoscaler",
      metadata: { name: m.name, labels: l },
      spec: {
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: m.name },
        minReplicas: 2,
        maxReplicas: 6,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
          },
        ],
        behavior: { scaleDown: { stabilizationWindowSeconds: 300 } },
      },
    },
    networkPolicy,
  ];
  if (m.database) objects.push(...postgresObjects(m));
  return objects;
}

/**
 * A Postgres per service: a one-replica StatefulSet on its own volume, behind its own Service.
 * The container's superuser (`postgres`) stays inside; the service connects as its own role,
 * owner of its own database, made at first start by the shared init script from the Secret.
 */
function postgresObjects(m: ServiceManifest): unknown[] {
  const name = postgresHost(m.name);
  const l = { ...labels(name, "database"), "meshwork.dev/database-of": m.name };
  return [
    {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name, labels: l },
      automountServiceAccountToken: false,
    },
    {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name, labels: l },
      spec: {
        serviceName: name,
        replicas: 1,
        selector: { matchLabels: { [NAME]: name } },
        template: {
          metadata: { labels: l },
          spec: {
            serviceAccountName: name,
            automountServiceAccountToken: false,
            terminationGracePeriodSeconds: 60,
            // The image's postgres user.
            securityContext: podSecurity(999),
            containers: [
              {
                name: "postgres",
                image: "postgres:16-bookworm",
                ports: [{ name: "postgres", containerPort: 5432 }],
                env: [
                  { name: "POSTGRES_USER", value: "postgres" },
                  secretEnv("POSTGRES_PASSWORD", postgresSecretName(m.name)),
                  { name: "SERVICE_NAME", value: m.name },
                  secretEnv("SERVICE_DB_PASSWORD", postgresSecretName(m.name)),
                  { name: "PGDATA", value: "/var/lib/postgresql/data/pgdata" },
                ],
                resources: {
                  requests: { cpu: "100m", memory: "256Mi" },
                  limits: { cpu: "1", memory: "1Gi" },
                },
                readinessProbe: {
                  exec: { command: ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"] },
                  periodSeconds: 5,
                  timeoutSeconds: 3,
                },
                livenessProbe: {
                  exec: { command: ["pg_isready", "-h", "127.0.0.1", "-U", "postgres"] },
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                  failureThreshold: 6,
                },
                securityContext: containerSecurity,
                volumeMounts: [
                  { name: "data", mountPath: "/var/lib/postgresql/data" },
                  { name: "run", mountPath: "/var/run/postgresql" },
                  { name: "tmp", mountPath: "/tmp" },
                  { name: "init", mountPath: "/docker-entrypoint-initdb.d", readOnly: true },
                ],
              },
            ],
            volumes: [
              { name: "run", emptyDir: {} },
              { name: "tmp", emptyDir: {} },
              // Executable: the image runs it (a non-executable script would be sourced into its shell).
              { name: "init", configMap: { name: "postgres-init", defaultMode: 0o555 } },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: "data" },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "5Gi" } } },
          },
        ],
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name, labels: l },
      spec: {
        selector: { [NAME]: name },
        ports: [{ name: "postgres", port: 5432, targetPort: "postgres" }],
      },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name, labels: l },
      spec: {
        podSelector: { matchLabels: { [NAME]: name } },
        policyTypes: ["Ingress", "Egress"],
        // Its service only; it calls nobody.
        ingress: [{ from: [podsNamed(m.name)], ports: [{ protocol: "TCP", port: 5432 }] }],
        egress: [],
      },
    },
  ];
}

const HEADER = (what: string) =>
  `# Generated by \`npm run meshctl -- k8s\` from apps/*/package.json (${what}). Do not edit:
# change the service or meshctl's k8s.ts and render again; a test fails while this file is stale.
`;

/** The generated files of the base: path (from the repository root) -> content. */
export function renderK8s(services: readonly ServiceManifest[]): Map<string, string> {
  const files = new Map<string, string>();
  for (const m of services) {
    const docs = serviceObjects(m, services).map((o) => stringify(o, { lineWidth: 0 }));
    files.set(`${K8S_SERVICES_DIR}/${m.name}.yaml`, `${HEADER(m.name)}${docs.join("---\n")}`);
  }
  files.set(
    `${K8S_SERVICES_DIR}/kustomization.yaml`,
    `${HEADER("every service")}${stringify(
      {
        apiVersion: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: services.map((m) => `${m.name}.yaml`),
      },
      { lineWidth: 0 },
    )}`,
  );
  files.set(K8S_NATS_CONFIG_PATH, renderK8sNatsConfig(services));
  files.set(
    K8S_NATS_MANIFEST_PATH,
    `${HEADER("NATS: every process's password")}${natsObjects(services)
      .map((o) => stringify(o, { lineWidth: 0 }))
      .join("---\n")}`,
  );
  const secrets = [
    ...services.flatMap((m) => [secretName(m.name), ...(m.database ? [postgresSecretName(m.name)] : [])]),
    TRUST_SECRET,
    ADMIN_SECRET,
    BOOTSTRAP_SECRET,
  ];
  files.set(
    K8S_DEV_SECRETS_KUSTOMIZATION,
    `${HEADER("every Secret; the .env files beside it come from `meshctl k8s --secrets`")}${stringify(
      {
        apiVersion: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        labels: [{ pairs: { "app.kubernetes.io/part-of": "meshwork" } }],
        secretGenerator: secrets.map((name) => ({ name, envs: [`${name}.env`] })),
      },
      { lineWidth: 0 },
    )}`,
  );
  return files;
}

/** The variable a NATS pod reads one process's password from (set from that process's Secret). */
export const natsPasswordVariable = (user: string) =>
  `${user.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_NATS_PASSWORD`;

/**
 * The NATS cluster's configuration: the same users and permissions as compose and `meshctl up`,
 * each password from the pod's environment; three routed servers (`nats-0..2` of the headless
 * Service) with JetStream on file storage, fsync'd on every write.
 */
export function renderK8sNatsConfig(services: readonly ServiceManifest[]): string {
  const mesh = { bucket: DEFAULT_BUCKET, namespace: "" };
  const pw = (name: string) => ({ env: natsPasswordVariable(name) });
  const users: ConfigUser[] = [
    // The monolith's user too: its CDC relay publishes LEGACY, its reverse sync reads INVENTORY.
    ...services
      .filter((m) => m.kind === "service" || m.kind === "legacy")
      .map((m) => ({
        user: m.name,
        password: pw(m.name),
        // The streams its package.json declares it consumes (inventory: the legacy CDC) too.
        permissions: servicePermissions(m.name, mesh, m.consumes),
      })),
    ...services
      .filter((m) => m.kind === "gateway")
      .map((m) => ({ user: m.name, password: pw(m.name), permissions: gatewayPermissions(mesh) })),
    { user: ADMIN_USER, password: pw(ADMIN_USER) },
  ];
  const base = renderNatsConfig({
    header:
      "# The NATS cluster of infra/k8s (`meshctl k8s` renders it): a user per process, passwords from the pod's environment.",
    host: "0.0.0.0",
    port: 4222,
    httpPort: 8222,
    storeDir: "/data",
    users,
  });
  const routes = Array.from({ length: NATS_NODES }, (_, i) => `    "nats://nats-${i}.nats-headless:6222"`);
  return base.replace(
    'jetstream { store_dir: "/data" }',
    [
      "server_name: $POD_NAME",
      // A write is acknowledged only once it is on disk: with the default (fsync every 2 min),
      // a 2025 analysis lost acknowledged writes when nodes crashed together.
      'jetstream { store_dir: "/data", sync_interval: always }',
      "lame_duck_duration: 20s",
      "lame_duck_grace_period: 5s",
      "cluster {",
      '  name: "meshwork"',
      '  listen: "0.0.0.0:6222"',
      "  routes = [",
      routes.join(",\n"),
      "  ]",
      "}",
    ].join("\n"),
  );
}

/**
 * The env files the `dev` overlay's secretGenerator reads (one per Secret, owner-only; values
 * already there are kept). Production creates the same Secrets from its own secret store.
 */
export function writeK8sSecrets(
  dir: string,
  services: readonly ServiceManifest[],
): Map<string, Record<string, string>> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = new Map<string, Record<string, string>>();
  const load = (name: string): Record<string, string> => {
    const file = join(dir, `${name}.env`);
    const values: Record<string, string> = {};
    if (existsSync(file)) {
      for (const line of readFileSync(file, "utf8").split("\n")) {
        const eq = line.indexOf("=");
        if (eq > 0 && !line.startsWith("#")) values[line.slice(0, eq)] = line.slice(eq + 1);
      }
    }
    out.set(name, values);
    return values;
  };
  const random = () => randomBytes(24).toString("base64url");
  const trust: string[] = [];
  for (const m of services) {
    const s = load(secretName(m.name));
    s.NATS_PASSWORD ??= random();
    if (m.kind === "legacy") {
      // No mesh identity; the HS256 secret of its session tokens instead.
      s.LEGACY_TOKEN_SECRET ??= randomBytes(32).toString("base64url");
      s.LEGACY_SYNC_KEY ??= newLegacySyncKey();
    } else {
      s.IDENTITY_KEY ??= generateIdentityKey().privateKey;
      trust.push(`${m.name}=${publicKeyText(privateKeyFrom(s.IDENTITY_KEY))}`);
    }
    if (m.name === "users") s.USERS_KEY_ENCRYPTION_KEY ??= randomBytes(32).toString("base64");
    if (m.database) {
      const p = load(postgresSecretName(m.name));
      p.POSTGRES_PASSWORD ??= random();
      p.SERVICE_DB_PASSWORD ??= random();
      s.DATABASE_URL = `postgres://${m.name}:${p.SERVICE_DB_PASSWORD}@${postgresHost(m.name)}:5432/${m.name}`;
    }
  }
  load(TRUST_SECRET).IDENTITY_TRUST = trust.join(",");
  const admin = load(ADMIN_SECRET);
  admin.NATS_PASSWORD ??= random();
  const bootstrap = load(BOOTSTRAP_SECRET);
  bootstrap[BOOTSTRAP_FILE] ??= randomBytes(32).toString("base64url");
  for (const [name, values] of out) {
    const file = join(dir, `${name}.env`);
    const body = Object.entries(values)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n");
    writeFileSync(file, `${body}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
  }
  return out;
}

/**
 * NATS JetStream as a 3-node cluster: a StatefulSet with a volume per node (file store), a
 * headless Service for the routes and stable names, a client Service, a PDB that keeps a quorum.
 */
function natsObjects(services: readonly ServiceManifest[]): unknown[] {
  const l = labels("nats", "broker");
  const users = [...services.map((m) => m.name), ADMIN_USER];
  const env = [
    { name: "POD_NAME", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    ...users.map((u) =>
      secretEnv(natsPasswordVariable(u), u === ADMIN_USER ? ADMIN_SECRET : secretName(u), "NATS_PASSWORD"),
    ),
  ];
  const port = (name: string, containerPort: number) => ({ name, containerPort, protocol: "TCP" });
  return [
    {
      apiVersion: "v1",
      kind: "ServiceAccount",
      metadata: { name: "nats", labels: l },
      automountServiceAccountToken: false,
    },
    {
      apiVersion: "apps/v1",
      kind: "StatefulSet",
      metadata: { name: "nats", labels: l },
      spec: {
        serviceName: "nats-headless",
        replicas: NATS_NODES,
        // All at once: a cluster forms only when its routes can reach each other.
        podManagementPolicy: "Parallel",
        selector: { matchLabels: { [NAME]: "nats" } },
        template: {
          metadata: {
            labels: l,
            annotations: { "prometheus.io/scrape": "false" },
          },
          spec: {
            serviceAccountName: "nats",
            automountServiceAccountToken: false,
            // Past lame_duck_duration: clients move to the other nodes before this one stops.
            terminationGracePeriodSeconds: 60,
            securityContext: podSecurity(1000),
            affinity: {
              podAntiAffinity: {
                preferredDuringSchedulingIgnoredDuringExecution: [
                  {
                    weight: 100,
                    podAffinityTerm: {
                      topologyKey: "kubernetes.io/hostname",
                      labelSelector: { matchLabels: { [NAME]: "nats" } },
                    },
                  },
                ],
              },
            },
            containers: [
              {
                name: "nats",
                image: "nats:2.10-alpine",
                args: ["-c", "/etc/nats/nats.conf"],
                ports: [port("client", 4222), port("cluster", 6222), port("monitor", 8222)],
                env,
                resources: {
                  requests: { cpu: "100m", memory: "256Mi" },
                  limits: { cpu: "1", memory: "1Gi" },
                },
                startupProbe: {
                  httpGet: { path: "/healthz?js-enabled-only=true", port: "monitor" },
                  periodSeconds: 5,
                  failureThreshold: 60,
                },
                readinessProbe: {
                  httpGet: { path: "/healthz?js-server-only=true", port: "monitor" },
                  periodSeconds: 10,
                  timeoutSeconds: 5,
                },
                livenessProbe: {
                  httpGet: { path: "/healthz?js-enabled-only=true", port: "monitor" },
                  periodSeconds: 30,
                  timeoutSeconds: 5,
                  failureThreshold: 3,
                },
                lifecycle: {
                  preStop: { exec: { command: ["nats-server", "-sl=ldm=/var/run/nats/nats.pid"] } },
                },
                securityContext: containerSecurity,
                volumeMounts: [
                  { name: "config", mountPath: "/etc/nats", readOnly: true },
                  { name: "data", mountPath: "/data" },
                  { name: "run", mountPath: "/var/run/nats" },
                ],
              },
            ],
            volumes: [
              { name: "config", configMap: { name: "nats-config" } },
              { name: "run", emptyDir: {} },
            ],
          },
        },
        volumeClaimTemplates: [
          {
            metadata: { name: "data" },
            spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "10Gi" } } },
          },
        ],
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "nats-headless", labels: l },
      spec: {
        clusterIP: "None",
        // Routes must resolve before the peers are ready, or the cluster never forms.
        publishNotReadyAddresses: true,
        selector: { [NAME]: "nats" },
        ports: [
          { name: "client", port: 4222, targetPort: "client" },
          { name: "cluster", port: 6222, targetPort: "cluster" },
          { name: "monitor", port: 8222, targetPort: "monitor" },
        ],
      },
    },
    {
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "nats", labels: l },
      spec: { selector: { [NAME]: "nats" }, ports: [{ name: "client", port: 4222, targetPort: "client" }] },
    },
    {
      apiVersion: "policy/v1",
      kind: "PodDisruptionBudget",
      metadata: { name: "nats", labels: l },
      // Two of three keep the JetStream meta group and every R3 stream's quorum.
      spec: { maxUnavailable: 1, selector: { matchLabels: { [NAME]: "nats" } } },
    },
    {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: { name: "nats", labels: l },
      spec: {
        podSelector: { matchLabels: { [NAME]: "nats" } },
        policyTypes: ["Ingress", "Egress"],
        ingress: [
          {
            from: [{ podSelector: { matchLabels: { [NATS_CLIENT_LABEL]: "true" } } }],
            ports: [{ protocol: "TCP", port: 4222 }],
          },
          { from: [podsNamed("nats")], ports: [{ protocol: "TCP", port: 6222 }] },
          { from: [podsNamed("prometheus")], ports: [{ protocol: "TCP", port: 8222 }] },
        ],
        egress: [dnsEgress, { to: [podsNamed("nats")], ports: [{ protocol: "TCP", port: 6222 }] }],
      },
    },
  ];
}
