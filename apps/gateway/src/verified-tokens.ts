import { LRUCache } from "lru-cache";
import type { Identity } from "./auth.js";

/** What the token cache needs to know of a key set: when it was fetched and its keys. */
export interface KeySetKeys {
  /** When it was fetched from the users service, ms since the epoch (its version). */
  readonly fetchedAt: number;
  /** Each key's material (its JWK as JSON) by `kid`: a key the set no longer has, or whose material changed, is gone. */
  readonly keys: ReadonlyMap<string, string>;
}

interface Entry {
  identity: Identity;
  /** The key set it was verified against, and the key. */
  set: KeySetKeys;
  kid: string | undefined;
  /** When it stops being used: its `exp`, or the key set's end of use, whichever is sooner. */
  until: number;
}

/**
 * Tokens verified, by their exact string, so a caller's next calls skip the ES256 verification
 * (in the bench, a verification costs more than proxying the call). An entry is used only:
 * - before the token's `exp` (its `nbf` passed already: a token not yet valid never verifies,
 *   and failures are not kept);
 * - before the key set it was verified against reaches its max age (a key dropped by the users
 *   service stops working here once the key set is fetched again, as without the cache);
 * - while the process's current key set still has the same key under its `kid`: a rotation
 *   that removes (or replaces) the key ends every token it signed at once, when the new set
 *   arrives (a refetch on an unknown `kid`, or the old set's age), even if the entry is young.
 * At most `max` entries (least recently used go first).
 */
export class VerifiedTokens {
  readonly #entries: LRUCache<string, Entry>;

  constructor(
    max: number,
    /** How long a key set is used after its fetch, ms. */
    readonly maxAgeMs: number,
  ) {
    this.#entries = new LRUCache<string, Entry>({ max });
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The identity of `token` if it was verified and may still be used, given the `current` key set. */
  get(token: string, current: KeySetKeys | undefined, now: number): Identity | undefined {
    const entry = this.#entries.get(token);
    if (!entry) return undefined;
    if (entry.until > now && (entry.set === current || stillHas(current, entry))) return entry.identity;
    this.#entries.delete(token);
    return undefined;
  }

  /** Keeps `identity`, verified now with the key `kid` of `set`. */
  set(token: string, identity: Identity, set: KeySetKeys, kid: string | undefined, now: number): void {
    const until = Math.min(identity.expiresAt, set.fetchedAt + this.maxAgeMs);
    if (until <= now) return;
    this.#entries.set(token, { identity, set, kid, until });
  }
}

/** Whether `current` (a newer key set) still has the very key `entry` was verified with. */
function stillHas(current: KeySetKeys | undefined, entry: Entry): boolean {
  if (!current || entry.kid === undefined) return false;
  const material = entry.set.keys.get(entry.kid);
  return material !== undefined && current.keys.get(entry.kid) === material;
}
