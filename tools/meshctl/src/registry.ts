import { DEFAULT_BUCKET, watchRegistry } from "@meshwork/discovery";
import { connectNats, type NatsCredentials } from "@meshwork/events";
import { checkHealth } from "./health.js";

/** The registry bucket of a mesh: one per events namespace, so side-by-side meshes never mix. */
export function registryBucketFor(namespace: string): string {
  return namespace ? `${namespace.slice(0, -1).replace(/[^A-Za-z0-9_-]/g, "_")}_registry` : DEFAULT_BUCKET;
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

/**
 * One row per live instance in the registry (service, instance id, address, version, uptime,
 * health asked of the instance itself), sorted by service then address; `ok: false` with the
 * reason when NATS does not answer.
 */
export async function registryRows(
  natsUrl: string,
  bucket: string,
  credentials?: NatsCredentials,
): Promise<{ ok: true; rows: string[][] } | { ok: false; detail: string }> {
  let nc: Awaited<ReturnType<typeof connectNats>>;
  try {
    nc = await connectNats(natsUrl, "meshctl-status", credentials);
  } catch (err) {
    return { ok: false, detail: `NATS unreachable (${err instanceof Error ? err.message : String(err)})` };
  }
  try {
    const watcher = await watchRegistry({ nc, bucket });
    await watcher.ready;
    const instances = watcher
      .all()
      .sort((a, b) =>
        a.service === b.service ? a.address.localeCompare(b.address) : a.service.localeCompare(b.service),
      );
    await watcher.stop();
    const now = Date.now();
    const rows = await Promise.all(
      instances.map(async (r) => [
        r.service,
        r.instanceId.slice(0, 8),
        r.address,
        r.version,
        age(now - r.startedAt),
        await checkHealth(r.address),
      ]),
    );
    return { ok: true, rows };
  } finally {
    await nc.close();
  }
}
