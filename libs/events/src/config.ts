import { z } from "zod";
import { DEFAULT_CONSUMER_LINGER_MS } from "./consumer/fetch-loop.js";
import type { NatsCredentials } from "./nats.js";

/**
 * `NATS_USER` and `NATS_PASSWORD`: this process's own NATS user, when the server requires
 * authentication (as the one `meshctl up` starts does). Both or neither.
 */
export function natsCredentialsEnvShape() {
  return {
    NATS_USER: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/, "letters, digits, '-' and '_' only")
      .optional(),
    NATS_PASSWORD: z.string().min(1).optional(),
  };
}

/** The credentials of {@link natsCredentialsEnvShape}'s variables; throws when only one is set. */
export function toNatsCredentials(env: {
  NATS_USER?: string;
  NATS_PASSWORD?: string;
}): NatsCredentials | undefined {
  if (env.NATS_USER === undefined && env.NATS_PASSWORD === undefined) return undefined;
  if (env.NATS_USER === undefined || env.NATS_PASSWORD === undefined) {
    throw new Error("invalid configuration: NATS_USER and NATS_PASSWORD go together");
  }
  return { user: env.NATS_USER, password: env.NATS_PASSWORD };
}

/** The event settings of a service, as a zod shape to spread into its config schema. */
export function eventsEnvShape() {
  return {
    NATS_URL: z.string().min(1).default("nats://127.0.0.1:4222"),
    ...natsCredentialsEnvShape(),
    /**
     * Prefix of every stream name and subject this process declares or uses (e.g. `t1234.`), so
     * several meshes, or tests, can share one NATS server. Empty in a normal deployment.
     */
    EVENTS_NAMESPACE: z
      .string()
      .regex(/^([a-z0-9_-]+\.)?$/i, "must be empty or a token followed by a dot")
      .default(""),
    OUTBOX_BATCH_SIZE: z.coerce.number().int().positive().default(256),
    /** The relay also polls this often, in case a notification was missed. */
    OUTBOX_POLL_MS: z.coerce.number().int().positive().default(1_000),
    /**
     * Sent outbox rows are deleted after this long. 0: the relay deletes each row as it claims
     * it for publishing (half Postgres's CPU and WAL per event of marking it sent; see
     * `OutboxRelayOptions.retentionMs`). An empty value is refused, not read as 0: `z.coerce`
     * makes `""` 0, and a blank line in an env file must not switch the relay to deleting rows.
     */
    OUTBOX_RETENTION_H: z
      .string()
      .trim()
      .min(1, "must be a number of hours (0: keep no sent rows)")
      .pipe(z.coerce.number<string>().nonnegative())
      .default(24),
    /**
     * Copies of each stream this service declares (its own stream, its dead-letter stream) on a
     * NATS cluster: 3 in production (infra/k8s prod), so an acknowledged event survives a node.
     * A single server takes 1 only.
     */
    STREAM_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
    /** Deliveries of one event before it goes to the dead-letter stream. */
    CONSUMER_MAX_DELIVER: z.coerce.number().int().positive().default(5),
    /** First redelivery delay; doubles per delivery, capped at 30 s. */
    CONSUMER_BACKOFF_MS: z.coerce.number().int().positive().default(500),
    /**
     * How long the server waits for a consumer's ack before it redelivers to another instance.
     * Short in chaos runs, so a paused (SIGSTOP) instance's events move on within the run.
     */
    CONSUMER_ACK_WAIT_MS: z.coerce.number().int().positive().default(30_000),
    /**
     * How long a consumer holds a batch smaller than its maximum for more events before applying
     * it, counted from the oldest event's arrival: fewer, larger transactions, less CPU per event
     * when events trickle in; an idle consumer's single event waits at most this long. 0: off.
     * At most 100, far below any ack wait.
     */
    CONSUMER_LINGER_MS: z.coerce.number().int().min(0).max(100).default(DEFAULT_CONSUMER_LINGER_MS),
  };
}

type EventsEnv = z.infer<z.ZodObject<ReturnType<typeof eventsEnvShape>>>;

export interface EventsConfig {
  natsUrl: string;
  /** This service's NATS user; absent: connect without authentication. */
  natsCredentials?: NatsCredentials;
  namespace: string;
  /** Replicas of the streams this service declares (STREAM_REPLICAS; 1 on a single server). */
  streamReplicas?: number;
  outbox: { batchSize: number; pollMs: number; retentionMs: number };
  consumer: {
    maxDeliver: number;
    backoffMs: number;
    ackWaitMs: number;
    /** CONSUMER_LINGER_MS; absent: {@link DEFAULT_CONSUMER_LINGER_MS}. */
    lingerMs?: number;
  };
}

export function toEventsConfig(env: EventsEnv): EventsConfig {
  return {
    natsUrl: env.NATS_URL,
    natsCredentials: toNatsCredentials(env),
    namespace: env.EVENTS_NAMESPACE,
    streamReplicas: env.STREAM_REPLICAS,
    outbox: {
      batchSize: env.OUTBOX_BATCH_SIZE,
      pollMs: env.OUTBOX_POLL_MS,
      retentionMs: env.OUTBOX_RETENTION_H * 3_600_000,
    },
    consumer: {
      maxDeliver: env.CONSUMER_MAX_DELIVER,
      backoffMs: env.CONSUMER_BACKOFF_MS,
      ackWaitMs: env.CONSUMER_ACK_WAIT_MS,
      lingerMs: env.CONSUMER_LINGER_MS,
    },
  };
}
