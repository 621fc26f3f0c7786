import type {
  NewProduct,
  Product,
  ProductChanges,
  ProductRef,
  Reservation,
  ReservationItem,
  StockAudit,
} from "./inventory.js";

/**
 * Products, stock and reservations. Every stock change is atomic and never oversells; the
 * reservation calls are idempotent by reservation id.
 */
export interface InventoryRepository {
  /** SkuTakenError when the sku exists. */
  createProduct(p: NewProduct): Promise<Product>;
  /** ProductNotFoundError when unknown. */
  getProduct(id: string): Promise<Product>;
  /** Up to `limit` products' ids and versions with id greater than `afterId`, in id order. */
  listProductRefsAfter(afterId: string | undefined, limit: number): Promise<ProductRef[]>;
  /** The products of `ids` that exist, in id order. */
  getProducts(ids: readonly string[]): Promise<Product[]>;
  /** Changes name and/or price (version + 1, ProductUpdated); ProductNotFoundError when unknown. */
  updateProduct(id: string, changes: ProductChanges): Promise<Product>;
  /** Adds (or removes) units on hand; InsufficientStockError below what is reserved. */
  adjustStock(productId: string, delta: number): Promise<Product>;
  /** Holds every item or none; a repeat with the same items returns the reservation. */
  reserve(id: string, items: readonly ReservationItem[]): Promise<Reservation>;
  release(id: string): Promise<Reservation>;
  commit(id: string): Promise<Reservation>;
  getReservation(id: string): Promise<Reservation>;
  audit(): Promise<StockAudit[]>;
}
