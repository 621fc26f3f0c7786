import { keysetTokens, pageSize } from "@meshwork/db";
import type { Product } from "../../domain/inventory.js";
import type { InventoryRepository } from "../../domain/ports.js";

export interface ListProductsInput {
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface ProductPage {
  products: Product[];
  nextPageToken: string;
}

const pages = keysetTokens("p1:", "ListProducts");

/** Pages through the catalogue in creation order (ids are UUIDv7) with an opaque keyset token. */
export async function listProducts(
  deps: { store: InventoryRepository },
  input: ListProductsInput,
): Promise<ProductPage> {
  const size = pageSize(input.pageSize);
  const rows = await deps.store.listProductsAfter(
    input.pageToken ? pages.decode(input.pageToken) : undefined,
    size + 1,
  );
  const { items, nextPageToken } = pages.page(rows, size);
  return { products: items, nextPageToken };
}
