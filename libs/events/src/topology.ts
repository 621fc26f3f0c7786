import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  JetStreamApiError,
  type JetStreamManager,
  RetentionPolicy,
  StorageType,
} from "@nats-io/jetstream";
import { nanos } from "@nats-io/transport-node";

/** A stream, declared in code and provisioned at start-up. */
export interface StreamSpec {
  name: string;
  subjects: string[];
  /** How long messages are kept. Default 7 days. */
  maxAgeMs?: number;
  /** The window in which a repeated `Nats-Msg-Id` is dropped. Default 10 minutes. */
  duplicateWindowMs?: number;
  /** Copies on a NATS cluster (`num_replicas`). Default 1; a single server allows 1 only. */
  replicas?: number;
}

/** A durable pull consumer, declared in code. */
export interface ConsumerSpec {
  stream: string;
  durable: string;
  /** One subject filter (nats-server 2.9 has no `filter_subjects`); wildcards allowed. */
  filterSubject: string;
  /** How long the server waits for an ack before redelivering. Default 30 s. */
  ackWaitMs?: number;
  maxAckPending?: number;
  /**
   * The server's delivery limit (`max_deliver`): a backstop, so that no message is delivered
   * without end even if the consumer could not settle it. `createEventConsumer` sets it at start
   * to one more than its own `maxDeliver` (CONSUMER_MAX_DELIVER), which it dead-letters at; left
   * out, an existing consumer keeps its limit and a new one starts without one.
   */
  maxDeliver?: number;
}

const DAY = 86_400_000;

function isNotFound(err: unknown): boolean {
  return err instanceof JetStreamApiError && err.status === 404;
}

/**
 * Creates or updates streams and consumers so the server matches the declaration. Safe to run
 * from every instance at every start: an existing stream or consumer is updated in place.
 */
export async function provision(
  jsm: JetStreamManager,
  topology: { streams?: readonly StreamSpec[]; consumers?: readonly ConsumerSpec[] },
): Promise<void> {
  for (const s of topology.streams ?? []) {
    const config = {
      name: s.name,
      subjects: s.subjects,
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(s.maxAgeMs ?? 7 * DAY),
      duplicate_window: nanos(s.duplicateWindowMs ?? 10 * 60_000),
      num_replicas: s.replicas ?? 1,
    };
    try {
      await jsm.streams.info(s.name);
      await jsm.streams.update(s.name, config);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await jsm.streams.add(config);
      } catch (addErr) {
        // Another instance created it in between: fine.
        if (!(addErr instanceof JetStreamApiError && addErr.code === 10058)) throw addErr;
      }
    }
  }
  for (const c of topology.consumers ?? []) {
    const config = {
      durable_name: c.durable,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: c.filterSubject,
      ack_wait: nanos(c.ackWaitMs ?? 30_000),
      max_ack_pending: c.maxAckPending ?? 1_000,
    };
    try {
      const existing = await jsm.consumers.info(c.stream, c.durable);
      // nats-server 2.9 updates max_deliver in place (checked on 2.9.10); the other fields keep
      // their values when left out.
      const max_deliver = c.maxDeliver ?? existing.config.max_deliver ?? -1;
      await jsm.consumers.update(c.stream, c.durable, { ...config, max_deliver });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await jsm.consumers.add(c.stream, { ...config, max_deliver: c.maxDeliver ?? -1 });
    }
  }
}
