import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { Meter } from "@opentelemetry/api";
import { LRUCache } from "lru-cache";
import { ProductNotFoundError } from "../domain/order.js";
import type { Price, PriceList } from "../domain/ports.js";

/** What an order takes from the catalogue for one product. */
export type CataloguePrice = Price;

export interface CatalogueOptions {
  /**
   * How long a price is reused, in ms; 0 asks inventory on every placement. Prices cannot change
   * through InventoryService today (a product keeps the price it was created with), so the TTL
   * only bounds how stale a price could be if that ever changes.
   */
  ttlMs: number;
  /** Products remembered at most (least recently used go first). */
  max: number;
  meter: Meter;
  /** The clock of the TTL (`performance` by default): tests move it themselves. */
  clock?: { now(): number };
}

/** The product prices orders need at placement, from inventory, remembered for a while. */
export interface Catalogue {
  /** The product's price; rejects with inventory's error (NOT_FOUND for an unknown product). */
  price(productId: string): Promise<CataloguePrice>;
}

/**
 * A read-through cache of product prices in front of `InventoryService.GetProduct`: an LRU
 * bounded in entries and age, with single-flight loading (placements of the same product that
 * miss together make one call). Failures, NOT_FOUND included, are never remembered, so a product
 * created a moment later is found. Hits and misses are counted in `cache.requests`.
 */
export function createCatalogue(
  inventory: () => Client<typeof InventoryService>,
  options: CatalogueOptions,
): Catalogue {
  const load = async (productId: string): Promise<CataloguePrice> => {
    const { product } = await inventory().getProduct({ id: productId });
    return { amountMinor: product?.price?.amountMinor ?? 0n, currency: product?.price?.currency ?? "" };
  };
  const requests = options.meter.createCounter("cache.requests", {
    description: "Cache look-ups, by cache, tier and result (hit, miss)",
  });
  const counted = (result: "hit" | "miss") => {
    const attrs = { cache: "product_prices", tier: "memory", result };
    return () => requests.add(1, attrs);
  };
  const hit = counted("hit");
  const miss = counted("miss");
  if (options.ttlMs <= 0) {
    return {
      price(productId) {
        miss();
        return load(productId);
      },
    };
  }
  const cache = new LRUCache<string, CataloguePrice>({
    max: options.max,
    ttl: options.ttlMs,
    fetchMethod: (productId) => load(productId),
    ...(options.clock ? { perf: options.clock, ttlResolution: 0 } : {}),
  });
  return {
    async price(productId) {
      const status: LRUCache.Status<string, CataloguePrice> = {};
      const price = await cache.fetch(productId, { status });
      // A look-up that joined another's load in flight made no call of its own: a hit.
      if (status.fetch === "miss" || status.fetch === "stale") miss();
      else hit();
      if (!price) throw new Error(`no price loaded for product ${productId}`);
      return price;
    },
  };
}

/** The catalogue as placement sees it: inventory's NOT_FOUND becomes ProductNotFoundError. */
export function priceList(catalogue: Catalogue): PriceList {
  return {
    async price(productId) {
      try {
        return await catalogue.price(productId);
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code === Code.NotFound) throw new ProductNotFoundError(productId, { cause: e });
        throw e;
      }
    },
  };
}
