import { connect, type NatsConnection } from "@nats-io/transport-node";

/**
 * Connects to NATS and keeps reconnecting for ever: a broker outage must make the outbox grow
 * and then drain, never stop the service. The first connection is awaited (and retried) too.
 */
export async function connectNats(url: string, name: string): Promise<NatsConnection> {
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
  });
}
