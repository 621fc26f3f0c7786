import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import type { Cache } from "@meshwork/cache";
import type {
  InventoryService,
  ListProductsRequest,
  Product as ProductMessage,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import type { Logger } from "@meshwork/telemetry";
import { adjustStock } from "../../app/commands/adjust-stock.js";
import { createProduct } from "../../app/commands/create-product.js";
import { updateProduct } from "../../app/commands/update-product.js";
import { getProduct } from "../../app/queries/get-product.js";
import { listProducts } from "../../app/queries/list-products.js";
import { ProductNotFoundError } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";
import { mapped } from "./errors.js";
import { n, toProduct } from "./messages.js";

/** The product read path's cache: products by id, as the contract's message. */
export type ProductCache = Cache<ProductMessage>;

type ProductHandlers = Pick<
  ServiceImpl<typeof InventoryService>,
  "createProduct" | "getProduct" | "listProducts" | "updateProduct" | "adjustStock"
>;

/** The product RPCs: create, read (through the cache), list, update, adjust stock. */
export function createProductHandlers(
  store: () => InventoryRepository,
  logger: Logger,
  cache: () => ProductCache,
): ProductHandlers {
  /** A product through the cache; undefined when the store has none. */
  const cachedProduct = (id: string) =>
    cache().get(id, async () => {
      try {
        return toProduct(await getProduct({ store: store() }, id));
      } catch (err) {
        if (err instanceof ProductNotFoundError) return undefined;
        throw err;
      }
    });
  return {
    createProduct: (req) =>
      mapped(async () => {
        if (!req.price || !Number.isSafeInteger(n(req.price.amountMinor)))
          throw new ConnectError("price.amount_minor: out of range", Code.InvalidArgument);
        const product = await createProduct(
          { store: store() },
          {
            sku: req.sku,
            name: req.name,
            priceMinor: n(req.price.amountMinor),
            currency: req.price.currency,
            initialStock: n(req.initialStock),
          },
        );
        return { product: toProduct(product) };
      }),
    getProduct: (req) =>
      mapped(async () => {
        const product = await cachedProduct(req.id);
        if (!product) throw new ProductNotFoundError(req.id);
        return { product };
      }),
    listProducts: (req) => mapped(() => listThroughCache(store(), cache(), req)),
    updateProduct: (req) =>
      mapped(async () => {
        if (req.price && !Number.isSafeInteger(n(req.price.amountMinor)))
          throw new ConnectError("price.amount_minor: out of range", Code.InvalidArgument);
        const product = await updateProduct(
          { store: store() },
          {
            id: req.id,
            ...(req.name !== undefined ? { name: req.name } : {}),
            ...(req.price
              ? { price: { amountMinor: n(req.price.amountMinor), currency: req.price.currency } }
              : {}),
          },
        );
        return { product: toProduct(product) };
      }),
    adjustStock: (req) =>
      mapped(async () => {
        const product = await adjustStock(
          { store: store(), logger },
          { productId: req.productId, delta: n(req.delta), reason: req.reason },
        );
        return { product: toProduct(product) };
      }),
  };
}

/**
 * A page of products: its ids and versions come from the store; the products themselves from L1
 * when it holds them at that version, the rest in one query (which refills the cache).
 */
async function listThroughCache(store: InventoryRepository, cache: ProductCache, req: ListProductsRequest) {
  const page = await listProducts({ store }, { pageSize: req.pageSize, pageToken: req.pageToken });
  const missing = page.products.filter((p) => !cache.getLocal(p.id, p.version)).map((p) => p.id);
  const loaded = new Map<string, ProductMessage>();
  for (const p of missing.length > 0 ? await store.getProducts(missing) : []) {
    const message = toProduct(p);
    cache.put(p.id, message);
    loaded.set(p.id, message);
  }
  const products = page.products.flatMap((p) => {
    const m = loaded.get(p.id) ?? cache.getLocal(p.id, p.version);
    return m ? [m] : [];
  });
  return { products, nextPageToken: page.nextPageToken };
}
