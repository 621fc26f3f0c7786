import { type Client, Code, ConnectError } from "@connectrpc/connect";
import type { Cache } from "@meshwork/cache";
import type { InventoryService, Product } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { ProductNotFoundError } from "../domain/order.js";
import type { Price, PriceList } from "../domain/ports.js";

/** What an order takes from the catalogue for one product. */
export type CataloguePrice = Price;

/** The product prices orders need at placement, from inventory, through the product cache. */
export interface Catalogue {
  /** The product's price; rejects with NOT_FOUND for an unknown product, or inventory's error. */
  price(productId: string): Promise<CataloguePrice>;
}

/**
 * Product prices read through `cache` (L1 in this process, L2 shared by every orders instance)
 * in front of `InventoryService.GetProduct`. The cache holds inventory's Product message with
 * its version; inventory's ProductUpdated events drop a changed product in every instance (see
 * the server's invalidation feed), so a price change reaches placement within moments instead of
 * a TTL. Concurrent placements that miss together make one call. An unknown product is
 * remembered for the cache's short negative TTL; errors never are. `cache` undefined: inventory
 * is asked every time (PRODUCT_CACHE_TTL_MS=0).
 */
export function createCatalogue(
  inventory: () => Client<typeof InventoryService>,
  cache: Cache<Product> | undefined,
): Catalogue {
  const load = async (productId: string): Promise<Product | undefined> => {
    try {
      return (await inventory().getProduct({ id: productId })).product;
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw err;
    }
  };
  return {
    async price(productId) {
      const product = cache ? await cache.get(productId, () => load(productId)) : await load(productId);
      if (!product) throw new ConnectError(`product ${productId} not found`, Code.NotFound);
      return { amountMinor: product.price?.amountMinor ?? 0n, currency: product.price?.currency ?? "" };
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
