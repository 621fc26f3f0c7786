import type { SagaQueries, SagaRow } from "@meshwork/saga";
import { PermissionDeniedError, SagaNotFoundError } from "../../domain/order.js";

/** One placement saga with its history (operators: the admin role). Its id is the order's. */
export async function getSaga(
  deps: { sagas: SagaQueries },
  input: { roles: readonly string[]; sagaId: string },
): Promise<SagaRow> {
  if (!input.roles.includes("admin")) throw new PermissionDeniedError("GetSaga: needs the admin role");
  const row = await deps.sagas.get(input.sagaId);
  if (!row) throw new SagaNotFoundError(input.sagaId);
  return row;
}
