import { connect, type NatsConnection } from "@nats-io/transport-node";

/** A process's own NATS user (each service has one, with permissions of its own). */
export interface NatsCredentials {
  user: string;
  password: string;
}

/**
 * The inbox prefix of a NATS user: replies to its requests (JetStream API answers, fetched
 * messages, registry watches) arrive under it, and the server lets only that user subscribe there.
 */
export function inboxPrefixOf(user: string): string {
  return `_INBOX_${user}`;
}

/**
 * Connects to NATS and keeps reconnecting for ever: a broker outage must make the outbox grow
 * and then drain, never stop the service. The first connection is awaited (and retried) too.
 * With `credentials`, it authenticates as that user, and its inbox is {@link inboxPrefixOf} the
 * user, so no other user can read the replies it gets.
 */
export async function connectNats(
  url: string,
  name: string,
  credentials?: NatsCredentials,
): Promise<NatsConnection> {
  return connect({
    servers: url.split(","),
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
    timeout: 5_000,
    // Without this, every request (each JetStream publish waits on one) builds two Error
    // objects up front just to keep their stacks: a tenth of the relay's CPU.
    noAsyncTraces: true,
    ...(credentials
      ? { user: credentials.user, pass: credentials.password, inboxPrefix: inboxPrefixOf(credentials.user) }
      : {}),
  });
}
