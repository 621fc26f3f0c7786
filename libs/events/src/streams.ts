import type { ConsumerSpec, StreamSpec } from "./topology.js";

/**
 * The mesh's streams, declared once so that a producer and its consumers provision the same
 * thing whichever starts first. A stream holds the events of one producing service, on subjects
 * `<namespace>meshwork.<service>.>`; each consuming service has a dead-letter stream
 * `DLQ_<SERVICE>` on `<namespace>dlq.<service>.>`.
 */
export const meshStreams = {
  users: (namespace: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, "USERS"),
    subjects: [`${namespace}meshwork.users.>`],
    ...replicas(options),
  }),
  payments: (namespace: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, "PAYMENTS"),
    subjects: [`${namespace}meshwork.payments.>`],
    ...replicas(options),
  }),
  inventory: (namespace: string): StreamSpec => ({
    name: streamName(namespace, "INVENTORY"),
    subjects: [`${namespace}meshwork.inventory.>`],
  }),
  orders: (namespace: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, "ORDERS"),
    subjects: [`${namespace}meshwork.orders.>`],
    ...replicas(options),
  }),
  /**
   * The legacy monolith's change data capture (strangler fig): apps/legacy relays its database's
   * `cdc_outbox` here, the new services apply it.
   */
  legacy: (namespace: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, "LEGACY"),
    subjects: [`${namespace}meshwork.legacy.>`],
    ...replicas(options),
  }),
  /**
   * The legacy monolith's captured users (UserChanged, with legacy's scrypt password hash): a
   * stream of their own, kept 24 h (long enough for the users service to be down a day; a
   * longer gap is what `meshctl strangler backfill` re-syncs), on which only the users service
   * may consume. Legacy declares it and publishes to it; its NATS user, like every other
   * service's but users', has no consumer rights on it (tools/meshctl nats-auth.ts).
   */
  legacyUsers: (namespace: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, "LEGACY_USERS"),
    subjects: [`${namespace}meshwork.legacy_users.>`],
    maxAgeMs: 24 * 3_600_000,
    ...replicas(options),
  }),
  deadLetters: (namespace: string, service: string, options?: StreamOptions): StreamSpec => ({
    name: streamName(namespace, `DLQ_${service.toUpperCase()}`),
    subjects: [`${namespace}dlq.${service}.>`],
    ...replicas(options),
  }),
};

/** How a service declares a mesh stream: `replicas` from its STREAM_REPLICAS (`config.events.streamReplicas`). */
export interface StreamOptions {
  replicas?: number;
}

const replicas = (options?: StreamOptions) => (options?.replicas ? { replicas: options.replicas } : {});

/** The subject a consuming service's dead letters are published on. */
export function deadLetterSubject(namespace: string, service: string, durable: string): string {
  return `${namespace}dlq.${service}.${durable}`;
}

/**
 * A stream's name in a namespace: `USERS`, or `T1A2B_USERS` in namespace `t1a2b.` (stream names
 * cannot contain dots).
 */
export function streamName(namespace: string, base: string): string {
  return namespace
    ? `${namespace
        .slice(0, -1)
        .toUpperCase()
        .replace(/[^A-Z0-9_-]/g, "_")}_${base}`
    : base;
}

/** The durable consumer a service keeps on another service's stream. */
export function consumerOn(
  stream: StreamSpec,
  durable: string,
  options: { ackWaitMs?: number } = {},
): ConsumerSpec {
  const subject = stream.subjects[0];
  if (!subject) throw new Error(`stream ${stream.name} has no subject`);
  return { stream: stream.name, durable, filterSubject: subject, ...options };
}
