import { keysetTokens, pageSize } from "@meshwork/db";
import type { ProductRef } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export interface ListProductsInput {
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface ProductPage {
  /** The page's products by id and current version (the caller reads them, through its cache). */
  products: ProductRef[];
  nextPageToken: string;
}

const pages = keysetTokens("p1:", "ListProducts");

/** Pages through the catalogue in creation order (ids are UUIDv7) with an opaque keyset token. */
export async function listProducts(
  deps: { store: InventoryRepository },
  input: ListProductsInput,
): Promise<ProductPage> {
  const size = pageSize(input.pageSize);
  const rows = await deps.store.listProductRefsAfter(
    input.pageToken ? pages.decode(input.pageToken) : undefined,
    size + 1,
  );
  const { items, nextPageToken } = pages.page(rows, size);
  return { products: items, nextPageToken };
}
