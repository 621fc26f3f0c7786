import { existsSync } from "node:fs";
import { join } from "node:path";
import type { ServiceManifest } from "../services.js";

/** What `meshctl new service` is asked to create, validated. */
export interface ServiceSpec {
  /** Short name: directory, proto package segment, database, NATS user, compose service. */
  name: string;
  /** PascalCase of the name (`Reviews`): the proto service is `<Pascal>Service`. */
  pascal: string;
  port: number;
  publishesEvents: boolean;
  /** Services whose events this one consumes (each must publish some). */
  consumes: string[];
}

/** A name refused with the reason: the CLI prints `message` and exits 2. */
export class InvalidServiceSpecError extends Error {
  override readonly name = "InvalidServiceSpecError";
}

/**
 * Names the mesh already uses for something else: infrastructure processes of compose and
 * `meshctl up`, contract packages that are not services, the CLI itself.
 */
const RESERVED = new Set([
  "api",
  "common",
  "gateway",
  "meshctl",
  "meshwork",
  "postgres",
  "nats",
  "envoy",
  "jaeger",
  "prometheus",
  "grafana",
  "otel",
  "collector",
  "legacy",
  "console",
  "admin",
  "public",
  "dlq",
  "test",
  "grpc",
  "google",
  "buf",
]);

/** Ports other processes of the mesh take by default (gateway, its admin, NATS, Postgres, OTLP). */
const INFRA_PORTS = new Map<number, string>([
  [8080, "the gateway"],
  [9901, "the gateway's admin listener"],
  [4222, "NATS"],
  [8222, "NATS monitoring"],
  [5432, "PostgreSQL"],
  [4317, "OTLP/gRPC"],
  [4318, "the trace receiver (OTLP/HTTP)"],
]);

/** Lower-case letters and digits, starting with a letter: valid as a proto package segment, a
 * Postgres role, a NATS subject token, an environment variable prefix and a DNS label. */
const NAME = /^[a-z][a-z0-9]{1,29}$/;

export const pascalCase = (name: string): string => name.charAt(0).toUpperCase() + name.slice(1);

/**
 * Checks a requested service against the repository as it is: a clear error for a bad
 * identifier, a name already taken (by an app, a proto package, an npm workspace or the mesh's
 * infrastructure), a port another process uses, and an event source that publishes nothing.
 */
export function validateServiceSpec(
  root: string,
  manifests: readonly ServiceManifest[],
  request: {
    name: string;
    port?: string;
    publishesEvents?: boolean;
    consumes?: string;
    eventSources: readonly string[];
  },
): ServiceSpec {
  const { name } = request;
  if (!NAME.test(name)) {
    throw new InvalidServiceSpecError(
      `service name "${name}" is not a valid identifier: use 2-30 lower-case letters and digits, starting with a letter (it becomes the proto package meshwork.${name.toLowerCase().replace(/[^a-z0-9]/g, "")}.v1, a database role and a NATS subject)`,
    );
  }
  if (RESERVED.has(name)) throw new InvalidServiceSpecError(`service name "${name}" is reserved by the mesh`);
  const taken = manifests.find((m) => m.name === name);
  if (taken)
    throw new InvalidServiceSpecError(`service name "${name}" is taken: ${taken.dir} already declares it`);
  for (const path of [join("apps", name), join("proto", "meshwork", name)]) {
    if (existsSync(join(root, path)))
      throw new InvalidServiceSpecError(`service name "${name}" is taken: ${path} exists`);
  }
  if (existsSync(join(root, "node_modules", "@meshwork", name))) {
    throw new InvalidServiceSpecError(
      `service name "${name}" is taken: the workspace @meshwork/${name} exists`,
    );
  }

  const used = new Map<number, string>(INFRA_PORTS);
  for (const m of manifests) {
    used.set(m.port, m.name);
    if (m.adminPort) used.set(m.adminPort, `${m.name}'s admin listener`);
  }
  let port: number;
  if (request.port !== undefined) {
    port = Number(request.port);
    if (!/^\d+$/.test(request.port) || !Number.isInteger(port) || port < 1024 || port > 65535) {
      throw new InvalidServiceSpecError(`--port ${request.port}: give a port number between 1024 and 65535`);
    }
    const owner = used.get(port);
    if (owner)
      throw new InvalidServiceSpecError(`--port ${port} clashes with ${owner}, which uses it already`);
  } else {
    const services = manifests.filter((m) => m.kind === "service").map((m) => m.port);
    port = Math.max(50050, ...services) + 1;
    while (used.has(port)) port++;
  }

  const consumes = (request.consumes ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const source of consumes) {
    if (source === name)
      throw new InvalidServiceSpecError(
        `--consumes-events ${source}: a service does not consume its own events`,
      );
    if (!request.eventSources.includes(source)) {
      throw new InvalidServiceSpecError(
        `--consumes-events ${source}: no service publishes events under that name (event sources: ${request.eventSources.join(", ") || "none"})`,
      );
    }
  }
  return {
    name,
    pascal: pascalCase(name),
    port,
    publishesEvents: request.publishesEvents ?? false,
    consumes: [...new Set(consumes)],
  };
}
