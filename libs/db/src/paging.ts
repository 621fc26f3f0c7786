/** A page token that is not one this list handed out (tampered, or another list's). */
export class InvalidPageTokenError extends Error {
  override readonly name = "InvalidPageTokenError";
  constructor(list: string, options?: ErrorOptions) {
    super(`page_token is not a token returned by ${list}`, options);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Opaque keyset cursors over UUIDv7 ids (ordering by id is ordering by creation), so pages stay
 * stable while rows are added. `prefix` tells one list's tokens from another's; `list` names the
 * RPC in the error a bad token gets.
 */
export function keysetTokens(prefix: string, list: string) {
  const encode = (lastId: string): string => Buffer.from(prefix + lastId).toString("base64url");
  return {
    /** The last id of the previous page; throws {@link InvalidPageTokenError}. */
    decode(token: string): string {
      const raw = Buffer.from(token, "base64url").toString();
      const id = raw.slice(prefix.length);
      if (!raw.startsWith(prefix) || !UUID.test(id)) throw new InvalidPageTokenError(list);
      return id;
    },
    /**
     * A page from `rows`, fetched with a limit of `size + 1`: the first `size`, and the token of
     * the next page when there was one more row (empty on the last page).
     */
    page<T extends { id: string }>(rows: readonly T[], size: number): { items: T[]; nextPageToken: string } {
      const items = rows.slice(0, size);
      const last = items.at(-1);
      return {
        items,
        nextPageToken: rows.length > size && last ? encode(last.id) : "",
      };
    },
  };
}

export const DEFAULT_PAGE_SIZE = 20;
export const MAX_PAGE_SIZE = 100;

/** A requested page size: 0 means the default; larger than the maximum is coerced to it. */
export function pageSize(requested: number): number {
  return Math.min(requested || DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
}
