/**
 * The shared tier of a cache (L2): a store every instance of a service reads and writes, in front
 * of the source. Adapters: {@link createNatsKvTier} (the default: NATS is already there) and
 * {@link createRedisTier}. Keys are already namespaced by the cache; values are encoded entries
 * (see `entry.ts`).
 */
export interface SharedTier {
  /** `nats-kv` or `redis`: the adapter, as metrics and logs name it. */
  readonly adapter: string;
  /** The encoded entry under `key`, or undefined when there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  /**
   * Stores `entry` unless the stored one is newer (see `supersedes`), atomically with respect to
   * other writers; resolves whether it was stored. `ttlMs` bounds how long the tier keeps it.
   */
  offer(key: string, entry: Uint8Array, ttlMs: number): Promise<boolean>;
  /** Releases what the adapter opened itself (not a connection it was given). */
  close(): Promise<void>;
}
