import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { renderComposeNatsConfig } from "../compose-secrets.js";
import { findServices } from "../services.js";
import type { ServiceSpec } from "./names.js";

/**
 * Writes `text` to `path` through a temporary file and a rename: the file is replaced, never
 * rewritten in place, so a copy of the repository made with hard links (the scaffold test's)
 * never changes the original.
 */
export function replaceFile(path: string, text: string): void {
  const tmp = `${path}.meshctl-${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Inserts `text` before the first line matching `anchor`; fails loudly when the anchor is gone. */
function insertBefore(file: string, source: string, anchor: RegExp, text: string): string {
  const lines = source.split("\n");
  const at = lines.findIndex((l) => anchor.test(l));
  if (at < 0)
    throw new Error(`${file}: cannot find where to register the service (no line matching ${anchor})`);
  lines.splice(at, 0, ...text.replace(/\n$/, "").split("\n"));
  return lines.join("\n");
}

/** Inserts `text` after the last line matching `anchor`. */
function insertAfterLast(file: string, source: string, anchor: RegExp, text: string): string {
  const lines = source.split("\n");
  const at = lines.findLastIndex((l) => anchor.test(l));
  if (at < 0)
    throw new Error(`${file}: cannot find where to register the service (no line matching ${anchor})`);
  lines.splice(at + 1, 0, ...text.replace(/\n$/, "").split("\n"));
  return lines.join("\n");
}

function edit(root: string, file: string, change: (source: string) => string): string {
  const path = join(root, file);
  replaceFile(path, change(readFileSync(path, "utf8")));
  return file;
}

/**
 * One place a service must be known besides its own directory. `apply` edits (or renders) the
 * files and returns the ones it wrote; `after` says whether it needs the new contracts built
 * first (it runs code that imports them).
 */
export interface RegistrationStep {
  name: string;
  /** What the step does, for the summary `meshctl new service` prints. */
  describe: (s: ServiceSpec) => string;
  after: "sources" | "build";
  apply: (root: string, s: ServiceSpec, tools: { meshctl: (args: string[]) => void }) => string[];
}

const fileSymbol = (service: string, file: string) => `file_meshwork_${service}_v1_${file}`;

/** Every registration, in order. Add a step here and every new service gets it. */
export const registrationSteps: readonly RegistrationStep[] = [
  {
    name: "contracts",
    describe: (s) =>
      `libs/contracts/src/index.ts: meshworkFiles gains meshwork/${s.name}/v1 (the gateway routes /meshwork.${s.name}.v1.${s.pascal}Service/ to the "${s.name}" cluster, with the policies of its proto)`,
    after: "sources",
    apply(root, s) {
      const files = [s.name, ...(s.publishesEvents ? ["events"] : [])];
      return [
        edit(root, "libs/contracts/src/index.ts", (src) => {
          let out = insertAfterLast(
            "libs/contracts/src/index.ts",
            src,
            /^import \{ file_meshwork_\w+ \} from "\.\/gen\/meshwork\//,
            files
              .map(
                (f) => `import { ${fileSymbol(s.name, f)} } from "./gen/meshwork/${s.name}/v1/${f}_pb.js";`,
              )
              .join("\n"),
          );
          const start = out.indexOf("export const meshworkFiles");
          const end = out.indexOf("];", start);
          if (start < 0 || end < 0) throw new Error("libs/contracts/src/index.ts: meshworkFiles not found");
          out = `${out.slice(0, end)}${files.map((f) => `  ${fileSymbol(s.name, f)},\n`).join("")}${out.slice(end)}`;
          return out;
        }),
      ];
    },
  },
  {
    name: "compose",
    describe: (s) =>
      `docker-compose.yml: service "${s.name}" (image meshwork/${s.name}, port ${s.port}, its database, NATS user and identity key), Envoy waits for it`,
    after: "sources",
    apply(root, s) {
      const upper = s.name.toUpperCase();
      const secret = (v: string) =>
        `\${${v}:?run npm run meshctl -- secrets, then docker compose --env-file .meshwork/compose.env up}`;
      const block = `  ${s.name}:
    <<: *service
    build:
      context: .
      args:
        SERVICE: ${s.name}
    image: meshwork/${s.name}
    environment:
      <<: *service-env
      PORT: "${s.port}"
      ADVERTISE_HOST: ${s.name}
      NATS_USER: ${s.name}
      NATS_PASSWORD: ${secret(`${upper}_NATS_PASSWORD`)}
      IDENTITY_KEY: ${secret(`${upper}_IDENTITY_KEY`)}
      DATABASE_URL: postgres://${s.name}:${s.name}@postgres:5432/${s.name}
    healthcheck: *healthz

`;
      return [
        edit(root, "docker-compose.yml", (src) => {
          let out = insertBefore("docker-compose.yml", src, /^ {2}# The edge of deployments/, block);
          out = insertBefore(
            "docker-compose.yml",
            out,
            /^ {6}MESHCTL_NATS_PASSWORD:/,
            `      ${upper}_NATS_PASSWORD: ${secret(`${upper}_NATS_PASSWORD`)}`,
          );
          // Envoy's depends_on: the last `condition: service_healthy` before the gateway's block.
          const envoy = out.indexOf("\n  envoy:\n");
          const gateway = out.indexOf("\n  gateway:\n", envoy);
          if (envoy < 0 || gateway < 0)
            throw new Error("docker-compose.yml: the envoy service was not found");
          const section = out.slice(envoy, gateway);
          const last = section.lastIndexOf("        condition: service_healthy\n");
          if (last < 0) throw new Error("docker-compose.yml: envoy has no depends_on to extend");
          const cut = envoy + last + "        condition: service_healthy\n".length;
          out = `${out.slice(0, cut)}      ${s.name}:\n        condition: service_healthy\n${out.slice(cut)}`;
          return out;
        }),
      ];
    },
  },
  {
    name: "postgres",
    describe: (s) =>
      `infra/postgres/init.sql: role and database "${s.name}" (compose's Postgres), no one else may connect`,
    after: "sources",
    apply(root, s) {
      return [
        edit(
          root,
          "infra/postgres/init.sql",
          (src) =>
            `${src.replace(/\n*$/, "\n")}\nCREATE ROLE ${s.name} LOGIN PASSWORD '${s.name}';\nCREATE DATABASE ${s.name} OWNER ${s.name};\nREVOKE CONNECT ON DATABASE ${s.name} FROM PUBLIC;\n`,
        ),
      ];
    },
  },
  {
    name: "prometheus",
    describe: (s) =>
      `infra/prometheus/prometheus.yml: scrape ${s.name}:${s.port}/metrics (label service=${s.name})`,
    after: "sources",
    apply(root, s) {
      return [
        edit(root, "infra/prometheus/prometheus.yml", (src) => {
          const job = src.indexOf("job_name: meshwork-services");
          const next = src.indexOf("  - job_name:", job + 1);
          if (job < 0 || next < 0)
            throw new Error("infra/prometheus/prometheus.yml: job meshwork-services not found");
          const entry = `      - targets: [${s.name}:${s.port}]\n        labels: { service: ${s.name} }\n`;
          return `${src.slice(0, next)}${entry}${src.slice(next)}`;
        }),
      ];
    },
  },
  {
    name: "nats",
    describe: (s) =>
      `infra/nats/nats.conf: NATS user "${s.name}" with its own subjects${s.consumes.length ? ` and consumers on ${s.consumes.join(", ")}` : ""} (rendered, as \`meshctl secrets\` does)`,
    after: "sources",
    apply(root) {
      replaceFile(join(root, "infra/nats/nats.conf"), renderComposeNatsConfig(findServices(root)));
      return ["infra/nats/nats.conf"];
    },
  },
  {
    name: "meshctl up",
    describe: (s) =>
      `meshctl up: nothing to edit; it starts every apps/*/package.json with a "meshwork" field (port ${s.port}, database meshwork_${s.name}, NATS user ${s.name}, identity key)`,
    after: "sources",
    apply: () => [],
  },
  {
    name: "envoy",
    describe: () => "infra/envoy/envoy.yaml: re-rendered from the route table (`meshctl envoy`)",
    after: "build",
    apply(_root, _s, tools) {
      tools.meshctl(["envoy"]);
      return ["infra/envoy/envoy.yaml"];
    },
  },
  {
    name: "k8s",
    describe: (s) =>
      `infra/k8s/base: Deployment, headless Service, ServiceAccount, PDB, HPA, NetworkPolicy and Postgres for ${s.name}, its NATS user in the cluster's config, its Secret in the dev overlay (rendered: \`meshctl k8s\`)`,
    after: "build",
    apply(_root, _s, tools) {
      tools.meshctl(["k8s"]);
      return ["infra/k8s/"];
    },
  },
];
