import { cacheBucket } from "@meshwork/cache";
import { removeRegistry } from "@meshwork/discovery";
import { connectNats, streamName } from "@meshwork/events";
import { adminUrl } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { dropServiceDatabase } from "../src/provision.js";
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
  "LEGACY_USERS",
  "DLQ_INVENTORY",
  "DLQ_LEGACY",
  "DLQ_USERS",
  "DLQ_ORDERS",
] as const;

/**
 * Deletes the streams (those above and `extra`), the services' cache buckets (`KV_<ns>_cache-*`:
 * gateway, inventory, orders and any other) and the registry bucket of a mesh's namespace.
 */
export async function removeMeshStreams(
  namespace: string,
  options: { natsUrl?: string; extra?: readonly string[] } = {},
): Promise<void> {
  const nc = await connectNats(options.natsUrl ?? process.env.NATS_URL ?? "nats://127.0.0.1:4222", "cleanup");
  try {
    const jsm = await jetstreamManager(nc);
    for (const s of [...MESH_STREAMS, ...(options.extra ?? [])])
      await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
    const caches = `KV_${cacheBucket(namespace, "")}`;
    const buckets: string[] = [];
    for await (const name of jsm.streams.names()) if (name.startsWith(caches)) buckets.push(name);
    for (const name of buckets) await jsm.streams.delete(name).catch(() => {});
    await removeRegistry(nc, registryBucketFor(namespace));
  } finally {
    await nc.close();
  }
}

/** The processes of a mesh that own a database `meshctl up` provisions (`<prefix>_<name>`). */
export const MESH_DATABASES = [
  "users",
  "notifications",
  "inventory",
  "payments",
  "orders",
  "legacy",
] as const;

/** Drops the database and role of each (and `extra`) provisioned with `prefix` on the test server. */
export async function dropMeshDatabases(prefix: string, extra: readonly string[] = []): Promise<void> {
  for (const name of [...MESH_DATABASES, ...extra])
    await dropServiceDatabase(adminUrl(), `${prefix}_${name}`);
}
