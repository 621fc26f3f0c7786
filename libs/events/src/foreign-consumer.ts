import type { Registry } from "@bufbuild/protobuf";
import type { DatabaseHandle } from "@meshwork/db";
import type { Logger } from "@meshwork/telemetry";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { type Meter, metrics, type Tracer, trace } from "@opentelemetry/api";
import type { EventsConfig } from "./config.js";
import {
  type BatchEventHandler,
  createEventConsumer,
  type EventConsumer,
  type EventHandler,
} from "./consumer.js";
import { consumeForeignStream } from "./foreign-stream.js";
import type { InboxTable } from "./inbox.js";
import { deadLetterSubject, meshStreams } from "./streams.js";
import type { StreamSpec } from "./topology.js";

/**
 * What a consuming service already has, the same for each stream it consumes: its name (which
 * names its dead-letter stream `DLQ_<SERVICE>` and subjects `dlq.<service>.<durable>`), its event
 * settings (namespace, STREAM_REPLICAS, CONSUMER_MAX_DELIVER, CONSUMER_BACKOFF_MS), its NATS
 * connection, its database with its inbox, and its logger and telemetry.
 */
export interface ForeignConsumerHost {
  service: string;
  config: EventsConfig;
  nc: NatsConnection;
  // biome-ignore lint/suspicious/noExplicitAny: consumers work with any service's schema
  database: DatabaseHandle<any>;
  inbox: InboxTable;
  logger: Logger;
  /** Default: the global OpenTelemetry tracer and meter named `meshwork-<service>`. */
  telemetry?: { tracer: Tracer; meter: Meter };
}

/** What one consumer of another service's stream reads, and how it applies it. */
export interface ForeignConsumerSpec {
  /** The owner's stream, as `meshStreams` declares it: only its name and subjects are used. */
  stream: StreamSpec;
  /** The durable consumer; also the inbox's consumer key and the last token of the dead-letter subject. */
  durable: string;
  /** The one subject the durable reads; default: the stream's first subject (all of it). */
  filterSubject?: string;
  registry: Registry;
  /** Handlers by event type; other types on the subject are acked and skipped. */
  handlers: Record<string, EventHandler | BatchEventHandler>;
  /** The durable's ack wait; default: the host's CONSUMER_ACK_WAIT_MS (`config.consumer.ackWaitMs`). */
  ackWaitMs?: number;
  /** Rewrites a dead letter's data by event type before it is stored (blanks secrets). */
  redactDeadLetter?: (type: string, data: Uint8Array) => Uint8Array;
  /**
   * The durable exists already and is consumed as it is, with nothing declared or updated (an
   * upgrade draining a durable an older release left on another stream).
   */
  durableExists?: boolean;
  /** How often a missing stream is looked for again. Default 2 s. */
  retryMs?: number;
}

/**
 * The one way a service consumes another service's stream (strangler syncs, notifications): the
 * idempotent {@link createEventConsumer} behind the owner-respecting wait of
 * `consumeForeignStream`, with everything but the stream, the durable, its filter and the
 * handlers derived from the host: the dead-letter stream (with the host's replicas) and subject,
 * the delivery limit and backoff, the JetStream client. The owner's stream is never declared or
 * updated; until it exists the consumer waits for it (see `consumeForeignStream`).
 *
 * Not started: call `start()` (it does not wait for a missing stream) and `stop()` at shutdown.
 */
export function createForeignConsumer(host: ForeignConsumerHost, spec: ForeignConsumerSpec): EventConsumer {
  const { service, config, nc, logger } = host;
  const ns = config.namespace;
  const telemetry = host.telemetry ?? {
    tracer: trace.getTracer(`meshwork-${service}`),
    meter: metrics.getMeter(`meshwork-${service}`),
  };
  const consumer = () =>
    createEventConsumer({
      js: jetstream(nc),
      database: host.database,
      inbox: host.inbox,
      stream: spec.stream.name,
      durable: spec.durable,
      registry: spec.registry,
      handlers: spec.handlers,
      maxDeliver: config.consumer.maxDeliver,
      backoffMs: config.consumer.backoffMs,
      lingerMs: config.consumer.lingerMs,
      deadLetterSubject: deadLetterSubject(ns, service, spec.durable),
      redactDeadLetter: spec.redactDeadLetter,
      logger,
      tracer: telemetry.tracer,
      meter: telemetry.meter,
    });
  return consumeForeignStream({
    nc,
    stream: spec.stream,
    durable: spec.durable,
    filterSubject: spec.filterSubject,
    ackWaitMs: spec.ackWaitMs ?? config.consumer.ackWaitMs,
    deadLetters: meshStreams.deadLetters(ns, service, { replicas: config.streamReplicas }),
    declare: !spec.durableExists,
    retryMs: spec.retryMs,
    logger,
    consumer,
  });
}
