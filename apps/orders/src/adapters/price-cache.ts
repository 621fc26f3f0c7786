import { fromBinary } from "@bufbuild/protobuf";
import {
  type Cache,
  createCache,
  type InvalidationFeed,
  openSharedTier,
  startInvalidationFeed,
} from "@meshwork/cache";
import { ProductUpdatedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { type Product, ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { eventSubject, meshStreams } from "@meshwork/events";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../config.js";

/**
 * The price cache placement reads products through (`CATALOGUE_TTL_MS`; 0: none), and the feed
 * of inventory's ProductUpdated events that keeps it current.
 */
export async function openPriceCache(
  config: Config,
  nc: NatsConnection,
  service: string,
  telemetry: Telemetry,
  logger: Logger,
): Promise<{ products: Cache<Product>; feed: InvalidationFeed } | undefined> {
  if (config.catalogue.ttlMs <= 0) return undefined;
  const products = createCache({
    name: "products",
    schema: ProductSchema,
    version: (p) => Number(p.version),
    ttlMs: config.catalogue.ttlMs,
    negativeTtlMs: config.cache.negativeTtlMs,
    local: { maxEntries: config.catalogue.max, maxBytes: config.cache.maxBytes },
    shared: await openSharedTier(config.cache, { nc, namespace: config.events.namespace, service }),
    sharedTimeoutMs: config.cache.sharedTimeoutMs,
    meter: telemetry.meter,
    logger,
  });
  // Every instance follows inventory's price changes on its own ordered consumer.
  const inventoryStream = meshStreams.inventory(config.events.namespace);
  const feed = startInvalidationFeed({
    nc,
    stream: inventoryStream.name,
    filterSubject: eventSubject(config.events.namespace, ProductUpdatedSchema.typeName),
    logger,
    onEvent: async (e) => {
      const ev = fromBinary(ProductUpdatedSchema, e.data);
      await products.invalidate(ev.productId, Number(ev.version));
      // Price changes are rare admin actions: one line each says when this instance applied it.
      logger.info(
        { product_id: ev.productId, version: Number(ev.version) },
        "product change applied to the price cache",
      );
    },
  });
  return { products, feed };
}
