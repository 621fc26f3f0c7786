import { keysetTokens, pageSize } from "@meshwork/db";
import type { SagaQueries, SagaSummary } from "@meshwork/saga";
import { PermissionDeniedError } from "../../domain/order.js";

export interface ListSagasInput {
  roles: readonly string[];
  /** Only sagas in these states; empty for all. */
  states: readonly SagaSummary["status"][];
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

export interface SagaPage {
  sagas: SagaSummary[];
  nextPageToken: string;
}

const pages = keysetTokens("s1:", "ListSagas");

/** Pages through the placement sagas, newest first (operators: the admin role). */
export async function listSagas(deps: { sagas: SagaQueries }, input: ListSagasInput): Promise<SagaPage> {
  if (!input.roles.includes("admin")) throw new PermissionDeniedError("ListSagas: needs the admin role");
  const size = pageSize(input.pageSize);
  const beforeId = input.pageToken ? pages.decode(input.pageToken) : undefined;
  const rows = await deps.sagas.list({ statuses: input.states, beforeId, limit: size + 1 });
  const { items, nextPageToken } = pages.page(rows, size);
  return { sagas: items, nextPageToken };
}
