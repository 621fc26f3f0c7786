import type { KeyObject } from "node:crypto";
import { type NatsCredentials, natsCredentialsEnvShape, toNatsCredentials } from "@meshwork/events";
import { identityEnvShape } from "@meshwork/runtime";
import { z } from "zod";
import { DEFAULT_BUCKET, DEFAULT_TTL_MS } from "./registry.js";

/**
 * `UPSTREAMS`: static endpoints per service (its short name), beside or instead of the registry:
 * `users=http://127.0.0.1:50051,http://127.0.0.1:50061;payments=http://127.0.0.1:50053`.
 */
export function parseUpstreams(text: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const part of text.split(";").map((p) => p.trim())) {
    if (!part) continue;
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    if (eq <= 0 || !/^[a-z][a-z0-9_.-]*$/.test(name)) {
      throw new Error(`UPSTREAMS: expected <service>=<url>[,<url>...], got ${JSON.stringify(part)}`);
    }
    out[name] = part
      .slice(eq + 1)
      .split(",")
      .map((u) => u.trim())
      .filter(Boolean)
      .map((u) => {
        const url = new URL(u);
        if (url.protocol !== "http:")
          throw new Error(`UPSTREAMS: ${name}: only http:// (h2c) endpoints, got ${u}`);
        return url.origin;
      });
  }
  return out;
}

/** `UPSTREAMS` as a zod schema (default: none). */
function upstreamsSchema() {
  return z
    .string()
    .default("")
    .transform((text, ctx) => {
      try {
        return parseUpstreams(text);
      } catch (err) {
        ctx.addIssue({ code: "custom", message: err instanceof Error ? err.message : String(err) });
        return z.NEVER;
      }
    });
}

/** The discovery settings of a process, as a zod shape to spread into its config schema. */
export function discoveryEnvShape() {
  return {
    NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222"),
    ...natsCredentialsEnvShape(),
    /** `registry` (register in and watch the NATS KV bucket) or `static` (UPSTREAMS only). */
    DISCOVERY: z.enum(["registry", "static"]).default("registry"),
    /** The KV bucket; tests and side-by-side meshes use their own. */
    DISCOVERY_BUCKET: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, '-' and '_' only")
      .default(DEFAULT_BUCKET),
    /** A silent instance leaves the registry after this long; it heartbeats three times per TTL. */
    DISCOVERY_TTL_MS: z.coerce.number().int().min(300).default(DEFAULT_TTL_MS),
    /** Copies of the registry bucket on a NATS cluster (as the event streams: 3 in production). */
    STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
    /** The host others reach this instance at; default HOST (127.0.0.1 when HOST is a wildcard). */
    ADVERTISE_HOST: z.string().min(1).optional(),
    UPSTREAMS: upstreamsSchema(),
    /**
     * The runtime's identity keys serve the registry too: with `IDENTITY_KEY` an instance signs
     * its record; with `IDENTITY_TRUST` a reader accepts only records signed by the service they
     * name (for a NATS where anyone may write the bucket).
     */
    IDENTITY_KEY: identityEnvShape().IDENTITY_KEY,
    IDENTITY_TRUST: identityEnvShape().IDENTITY_TRUST,
  };
}

type DiscoveryEnv = z.infer<z.ZodObject<ReturnType<typeof discoveryEnvShape>>>;

export interface DiscoveryConfig {
  natsUrl: string;
  /** This process's NATS user (its registry keys are the ones it may write); absent: none. */
  natsCredentials?: NatsCredentials;
  mode: "registry" | "static";
  bucket: string;
  ttlMs: number;
  /** Copies of the registry bucket when this process creates it (STREAM_REPLICAS). */
  replicas?: number;
  advertiseHost: string | undefined;
  /** Static endpoints by service short name. */
  upstreams: Record<string, string[]>;
  /** This instance's key: its registry record is signed with it. */
  signingKey?: KeyObject;
  /** Services' public keys: only records signed by the service they name are used. Absent: all. */
  trust?: ReadonlyMap<string, KeyObject>;
}

export function toDiscoveryConfig(env: DiscoveryEnv): DiscoveryConfig {
  return {
    natsUrl: env.NATS_URL,
    natsCredentials: toNatsCredentials(env),
    mode: env.DISCOVERY,
    bucket: env.DISCOVERY_BUCKET,
    ttlMs: env.DISCOVERY_TTL_MS,
    replicas: env.STREAM_REPLICAS,
    advertiseHost: env.ADVERTISE_HOST,
    upstreams: env.UPSTREAMS,
    signingKey: env.IDENTITY_KEY,
    trust: env.IDENTITY_TRUST,
  };
}
