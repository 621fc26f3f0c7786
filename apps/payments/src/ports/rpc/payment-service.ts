import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type Faults as FaultsMessage,
  FaultsSchema,
  type Payment as PaymentMessage,
  PaymentSchema,
  type PaymentService,
  PaymentState,
} from "@meshwork/contracts/meshwork/payments/v1/payments";
import { mapErrors } from "@meshwork/runtime";
import type { Logger } from "@meshwork/telemetry";
import { authorizePayment } from "../../app/commands/authorize-payment.js";
import { capturePayment } from "../../app/commands/capture-payment.js";
import { refundPayment } from "../../app/commands/refund-payment.js";
import { setFaults } from "../../app/commands/set-faults.js";
import { voidPayment } from "../../app/commands/void-payment.js";
import { getPayment } from "../../app/queries/get-payment.js";
import { getProviderLedger } from "../../app/queries/get-provider-ledger.js";
import {
  type Faults,
  type Payment,
  PaymentConflictError,
  PaymentDeclinedError,
  PaymentNotFoundError,
  PaymentStateError,
  ProviderUnavailableError,
} from "../../domain/payment.js";
import type { FaultSwitch, PaymentRepository, ProviderBooks } from "../../domain/ports.js";

const STATES = {
  authorized: PaymentState.AUTHORIZED,
  captured: PaymentState.CAPTURED,
  voided: PaymentState.VOIDED,
  refunded: PaymentState.REFUNDED,
  declined: PaymentState.DECLINED,
} as const;

function toPayment(p: Payment): PaymentMessage {
  return create(PaymentSchema, {
    id: p.id,
    userId: p.userId ?? "",
    amount:
      p.amountMinor === null ? undefined : { amountMinor: BigInt(p.amountMinor), currency: p.currency ?? "" },
    state: STATES[p.state],
    declineReason: p.declineReason ?? "",
    createTime: timestampFromDate(p.createdAt),
    updateTime: timestampFromDate(p.updatedAt),
  });
}

function toFaults(f: Faults): FaultsMessage {
  return create(FaultsSchema, {
    failureRate: f.failureRate,
    addedLatencyMs: f.addedLatencyMs,
    hardDown: f.hardDown,
    declineAboveMinor: BigInt(f.declineAboveMinor),
  });
}

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof PaymentNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof PaymentConflictError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof PaymentDeclinedError || err instanceof PaymentStateError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof ProviderUnavailableError) return new ConnectError(err.message, Code.Unavailable);
  return err;
}

const mapped = mapErrors(toConnectError);

/** Translates between the proto messages and the use cases. */
export function createPaymentServiceHandlers(
  store: () => PaymentRepository,
  provider: FaultSwitch & ProviderBooks,
  logger: Logger,
): ServiceImpl<typeof PaymentService> {
  return {
    authorizePayment: (req) =>
      mapped(async () => {
        const amountMinor = Number(req.amount?.amountMinor ?? 0n);
        if (!Number.isSafeInteger(amountMinor)) {
          throw new ConnectError("amount.amount_minor: out of range", Code.InvalidArgument);
        }
        const payment = await authorizePayment(
          { payments: store() },
          { paymentId: req.paymentId, userId: req.userId, amountMinor, currency: req.amount?.currency ?? "" },
        );
        return { payment: toPayment(payment) };
      }),
    capturePayment: (req) =>
      mapped(async () => ({
        payment: toPayment(await capturePayment({ payments: store() }, req.paymentId)),
      })),
    voidPayment: (req) =>
      mapped(async () => ({ payment: toPayment(await voidPayment({ payments: store() }, req.paymentId)) })),
    refundPayment: (req) =>
      mapped(async () => ({ payment: toPayment(await refundPayment({ payments: store() }, req.paymentId)) })),
    getPayment: (req) =>
      mapped(async () => ({ payment: toPayment(await getPayment({ payments: store() }, req.paymentId)) })),
    setFaults(req) {
      const f = req.faults;
      if (!f) throw new ConnectError("faults: value is required", Code.InvalidArgument);
      const declineAboveMinor = Number(f.declineAboveMinor);
      if (!Number.isSafeInteger(declineAboveMinor)) {
        throw new ConnectError("faults.decline_above_minor: out of range", Code.InvalidArgument);
      }
      const faults = setFaults(
        { provider, logger },
        {
          failureRate: f.failureRate,
          addedLatencyMs: f.addedLatencyMs,
          hardDown: f.hardDown,
          declineAboveMinor,
        },
      );
      return { faults: toFaults(faults) };
    },
    getFaults: () => ({ faults: toFaults(provider.faults) }),
    getProviderLedger: (req) =>
      mapped(async () => ({
        entries: (await getProviderLedger({ provider }, req.paymentId)).map((e) => ({
          operation: e.operation,
          amountMinor: BigInt(e.amountMinor),
          declineReason: e.declineReason ?? "",
          recordTime: timestampFromDate(e.recordedAt),
        })),
      })),
  };
}
