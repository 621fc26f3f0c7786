/**
 * What one cache slot holds, in every tier: a value (the contract's Protobuf binary), the record
 * that the source has no such key (negative caching), or a tombstone left by an invalidation.
 * Every entry carries the source's version of the key, so a tier can refuse to replace a newer
 * entry with an older one whatever order writes and invalidations arrive in.
 */
export type EntryKind = "value" | "missing" | "tombstone";

export interface Entry {
  kind: EntryKind;
  /** The source's version of the key (a row version); 0 for "missing". */
  version: number;
  /** Epoch ms after which the entry is not to be used (NATS KV 2.9 has no per-key TTL). */
  expiresAt: number;
  /** The value's Protobuf binary; empty for "missing" and "tombstone". */
  payload: Uint8Array;
}

const FORMAT = 1;
/** format(1) kind(1) version(8, big-endian) expiresAt(8, big-endian): then the payload. */
export const HEADER_BYTES = 18;
const KINDS: readonly EntryKind[] = ["value", "missing", "tombstone"];

/** The entry as the bytes every shared tier stores (the Redis script reads the same header). */
export function encodeEntry(e: Entry): Uint8Array {
  if (!Number.isSafeInteger(e.version) || e.version < 0)
    throw new RangeError(`version ${e.version}: not a safe non-negative integer`);
  const out = new Uint8Array(HEADER_BYTES + e.payload.byteLength);
  const view = new DataView(out.buffer);
  out[0] = FORMAT;
  out[1] = KINDS.indexOf(e.kind);
  view.setBigUint64(2, BigInt(e.version));
  view.setBigUint64(10, BigInt(Math.max(0, Math.floor(e.expiresAt))));
  out.set(e.payload, HEADER_BYTES);
  return out;
}

/** The entry in `bytes`, or undefined for bytes this code did not write (a foreign or older format). */
export function decodeEntry(bytes: Uint8Array): Entry | undefined {
  if (bytes.byteLength < HEADER_BYTES || bytes[0] !== FORMAT) return undefined;
  const kind = KINDS[bytes[1] ?? 255];
  if (!kind) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    kind,
    version: Number(view.getBigUint64(2)),
    expiresAt: Number(view.getBigUint64(10)),
    payload: bytes.subarray(HEADER_BYTES),
  };
}

/**
 * Whether `next` may replace `current`. A newer version always wins. At the same version a value
 * (or "missing") may refresh one and replace a tombstone (a tombstone at version v says "older
 * than v is stale", and the value at v is the fresh one), but a tombstone never replaces the value
 * it names. An expired current entry is replaced by anything.
 */
export function supersedes(next: Entry, current: Entry | undefined, now = Date.now()): boolean {
  if (!current || current.expiresAt <= now) return true;
  if (next.version !== current.version) return next.version > current.version;
  return next.kind !== "tombstone";
}
