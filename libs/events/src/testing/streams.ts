import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../nats.js";
import { streamName } from "../streams.js";

/**
 * A test's clean-up on the shared NATS: deletes every stream of events namespace `namespace`
 * (the service's own, its dead letters, what a test declared beside them), on a connection of
 * its own. Streams deleted meanwhile by someone else are skipped.
 */
export async function deleteNamespaceStreams(
  namespace: string,
  url = process.env.NATS_URL ?? "nats://127.0.0.1:4222",
): Promise<void> {
  const nc = await connectNats(url, "test-cleanup");
  try {
    const jsm = await jetstreamManager(nc);
    const prefix = streamName(namespace, "");
    const names: string[] = [];
    for await (const name of jsm.streams.names()) if (name.startsWith(prefix)) names.push(name);
    for (const name of names) await jsm.streams.delete(name).catch(() => {});
  } finally {
    await nc.close();
  }
}
