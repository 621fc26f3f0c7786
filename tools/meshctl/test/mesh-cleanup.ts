import { removeRegistry } from "@meshwork/discovery";
import { connectNats, streamName } from "@meshwork/events";
import { jetstreamManager } from "@nats-io/jetstream";
import { registryBucketFor } from "../src/registry.js";

/**
 * The streams a mesh declares in its namespace: the services' events, the dead letters of their
 * consumers, and the strangler's data sync (legacy's captures, inventory's and legacy's DLQs).
 */
export const MESH_STREAMS = [
  "USERS",
  "PAYMENTS",
  "ORDERS",
  "DLQ_NOTIFICATIONS",
  "INVENTORY",
  "LEGACY",
  "DLQ_INVENTORY",
  "DLQ_LEGACY",
] as const;

/** Deletes the streams (those above and `extra`) and the registry bucket of a mesh's namespace. */
export async function removeMeshStreams(
  namespace: string,
  options: { natsUrl?: string; extra?: readonly string[] } = {},
): Promise<void> {
  const nc = await connectNats(options.natsUrl ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222", "cleanup");
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of [...MESH_STREAMS, ...(options.extra ?? [])])
      await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
    await removeRegistry(nc, registryBucketFor(namespace));
  } finally {
    await nc.close();
  }
}
