import { fromBinary } from "@bufbuild/protobuf";
import {
  type Cache,
  createCache,
  type InvalidationFeed,
  openSharedTier,
  startInvalidationFeed,
} from "@meshwork/cache";
import { ProductUpdatedSchema, StockChangedSchema } from "@meshwork/contracts/meshwork/inventory/v1/events";
import { type Product, ProductSchema } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { meshStreams } from "@meshwork/events";
import type { Logger, Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Config } from "../../config.js";

/** The product cache: L1 in this process, L2 on NATS KV or Redis (`CACHE_*`). */
export async function openProductCache(
  config: Config,
  nc: NatsConnection,
  service: string,
  telemetry: Telemetry,
  logger: Logger,
): Promise<Cache<Product>> {
  return createCache({
    name: "products",
    schema: ProductSchema,
    version: (p) => Number(p.version),
    ttlMs: config.cache.ttlMs,
    negativeTtlMs: config.cache.negativeTtlMs,
    local: { maxEntries: config.cache.maxEntries, maxBytes: config.cache.maxBytes },
    shared: await openSharedTier(config.cache, { nc, namespace: config.events.namespace, service }),
    sharedTimeoutMs: config.cache.sharedTimeoutMs,
    meter: telemetry.meter,
    logger,
  });
}

/** Every instance's ProductUpdated and StockChanged events drop the product's entry here. */
export function followProductEvents(
  products: Cache<Product>,
  nc: NatsConnection,
  stream: ReturnType<typeof meshStreams.inventory>,
  logger: Logger,
): InvalidationFeed {
  return startInvalidationFeed({
    nc,
    stream: stream.name,
    filterSubject: stream.subjects[0] ?? "",
    logger,
    onEvent: (e) => {
      if (e.type === ProductUpdatedSchema.typeName) {
        const ev = fromBinary(ProductUpdatedSchema, e.data);
        return products.invalidate(ev.productId, Number(ev.version));
      }
      if (e.type === StockChangedSchema.typeName) {
        const ev = fromBinary(StockChangedSchema, e.data);
        return products.invalidate(ev.productId, Number(ev.version));
      }
    },
  });
}
