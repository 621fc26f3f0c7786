import { Code, ConnectError } from "@connectrpc/connect";
import { InvalidPageTokenError } from "@meshwork/db";
import { mapErrors } from "@meshwork/runtime";
import {
  DuplicateItemError,
  InsufficientStockError,
  NothingToUpdateError,
  ProductNotFoundError,
  ReservationConflictError,
  ReservationNotFoundError,
  ReservationStateError,
  SkuTakenError,
  StockOutOfRangeError,
} from "../../domain/inventory.js";

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof ProductNotFoundError || err instanceof ReservationNotFoundError)
    return new ConnectError(err.message, Code.NotFound);
  if (err instanceof SkuTakenError || err instanceof ReservationConflictError)
    return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof InsufficientStockError || err instanceof ReservationStateError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  if (
    err instanceof InvalidPageTokenError ||
    err instanceof DuplicateItemError ||
    err instanceof StockOutOfRangeError ||
    err instanceof NothingToUpdateError
  )
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

/** Runs a handler body, its domain errors mapped by {@link toConnectError}. */
export const mapped = mapErrors(toConnectError);
