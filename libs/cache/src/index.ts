export { type Cache, type CacheOptions, type CacheStats, createCache } from "./cache.js";
export { type CacheConfig, cacheBucket, cacheEnvShape, openSharedTier, toCacheConfig } from "./config.js";
export { decodeEntry, type Entry, type EntryKind, encodeEntry, supersedes } from "./entry.js";
export {
  type FeedEvent,
  type InvalidationFeed,
  type InvalidationFeedOptions,
  startInvalidationFeed,
} from "./invalidation-feed.js";
export { createNatsKvTier, type NatsKvTierOptions, natsKvKey } from "./nats-kv-tier.js";
export { createRedisTier, type RedisTierOptions } from "./redis-tier.js";
export type { SharedTier } from "./shared-tier.js";
