import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { DEFAULT_BUCKET } from "@meshwork/discovery";
import { generateIdentityKey, privateKeyFrom, publicKeyText } from "@meshwork/runtime";
import { newLegacySyncKey } from "./identity-keys.js";
import {
  ADMIN_USER,
  type ConfigUser,
  gatewayPermissions,
  renderNatsConfig,
  servicePermissions,
} from "./nats-auth.js";
import type { ServiceManifest } from "./services.js";

/** Where the compose NATS configuration lives (rendered by `meshctl secrets`, committed). */
export const COMPOSE_NATS_CONFIG_PATH = "infra/nats/nats.conf";

/** The variable holding one process's secret in the compose environment file. */
export function composeVariable(process: string, what: "IDENTITY_KEY" | "NATS_PASSWORD"): string {
  return `${process.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_${what}`;
}

/**
 * The NATS configuration of `docker-compose.yml`: the same users and permissions as the NATS
 * `meshctl up` starts (default bucket, no namespace), each password read from the server's
 * environment, which compose fills from the secrets file. It holds no secret: it is committed.
 */
export function renderComposeNatsConfig(manifests: readonly ServiceManifest[]): string {
  const mesh = { bucket: DEFAULT_BUCKET, namespace: "" };
  const env = (name: string) => ({ env: composeVariable(name, "NATS_PASSWORD") });
  const users: ConfigUser[] = [
    // The legacy monolith relays its change data capture (LEGACY) and reverse-syncs the streams
    // it consumes: a user like a service's.
    ...manifests
      .filter((m) => m.kind === "service" || m.kind === "legacy")
      .map((m) => ({
        user: m.name,
        password: env(m.name),
        permissions: servicePermissions(m.name, mesh, m.consumes),
      })),
    ...manifests
      .filter((m) => m.kind === "gateway")
      .map((m) => ({ user: m.name, password: env(m.name), permissions: gatewayPermissions(mesh) })),
    { user: ADMIN_USER, password: env(ADMIN_USER) },
  ];
  return renderNatsConfig({
    header:
      "# docker-compose's NATS: a user per process (`meshctl secrets` renders it; passwords come from the environment).",
    host: "0.0.0.0",
    port: 4222,
    httpPort: 8222,
    storeDir: "/data",
    users,
  });
}

/**
 * The secrets `docker compose --env-file <file> up` needs: each process's identity key and NATS
 * password, the trust list (every process's public key), the key that seals users' signing keys
 * and the legacy monolith's session-token secret. Values already in `file` are kept; missing ones
 * are made. The file is readable by the owner only.
 */
export function writeComposeSecrets(
  file: string,
  manifests: readonly ServiceManifest[],
): Record<string, string> {
  const values: Record<string, string> = {};
  if (existsSync(file)) {
    for (const line of readFileSync(file, "utf8").split("\n")) {
      const eq = line.indexOf("=");
      if (eq > 0 && !line.startsWith("#")) values[line.slice(0, eq)] = line.slice(eq + 1);
    }
  }
  for (const name of [...manifests.map((m) => m.name), ADMIN_USER]) {
    values[composeVariable(name, "NATS_PASSWORD")] ??= randomBytes(24).toString("base64url");
  }
  const trust: string[] = [];
  // The monolith is no mesh process: it signs no identity assertion and trusts none. Its own
  // secret is the HS256 key of its session tokens.
  for (const m of manifests.filter((x) => x.kind !== "legacy")) {
    const variable = composeVariable(m.name, "IDENTITY_KEY");
    values[variable] ??= generateIdentityKey().privateKey;
    trust.push(`${m.name}=${publicKeyText(privateKeyFrom(values[variable]))}`);
  }
  values.IDENTITY_TRUST = trust.join(",");
  // Seals users' JWT signing keys in its database (AES-256-GCM).
  values.USERS_KEY_ENCRYPTION_KEY ??= randomBytes(32).toString("base64");
  if (manifests.some((m) => m.kind === "legacy")) {
    values.LEGACY_TOKEN_SECRET ??= randomBytes(32).toString("base64url");
    // Seals legacy users' password hashes, emails and names on LEGACY_USERS; only legacy and users get it.
    values.LEGACY_SYNC_KEY ??= newLegacySyncKey();
  }
  mkdirSync(dirname(file), { recursive: true });
  const body = Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
  writeFileSync(
    file,
    `# Written by meshctl secrets: keys and passwords of the compose mesh. Keep it private.\n${body}\n`,
    {
      mode: 0o600,
    },
  );
  chmodSync(file, 0o600);
  return values;
}
