import { type AnyTransaction, prepareStatement } from "@meshwork/db";
import { context, propagation } from "@opentelemetry/api";
import { sql } from "drizzle-orm";
import type { SagaDefinition } from "./definition.js";
import type { SagaTable } from "./table.js";

/**
 * Starts a saga in the caller's transaction, so it exists if and only if the state it drives
 * commits (the order row, say). The current trace context is kept with it: every step's span
 * joins the trace of the request that started it. Call the executor's `kick()` after commit to
 * start at once rather than at the next poll.
 */
export async function startSaga<D>(
  tx: AnyTransaction,
  table: SagaTable,
  definition: SagaDefinition<D>,
  instance: { id: string; data: D },
): Promise<void> {
  await tx.insert(table).values(newSagaRow(definition, instance));
}

/** The row of a new, runnable saga, with the trace context of the caller. */
export function newSagaRow<D>(definition: SagaDefinition<D>, instance: { id: string; data: D }) {
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return {
    id: instance.id,
    type: definition.type,
    status: "running" as const,
    data: instance.data as unknown,
    traceparent: carrier.traceparent ?? null,
  };
}

/**
 * The insert of a saga already leased to its starter (the executor's `startIn`), answering the
 * stored row: built by Drizzle once per table, not per saga.
 */
export function prepareLeasedInsert(table: SagaTable) {
  const ph = (name: string) => sql.placeholder(name) as unknown as never;
  return prepareStatement<SagaTable["$inferSelect"]>("saga_insert_leased", (q) =>
    q
      .insert(table)
      .values({
        id: ph("id"),
        type: ph("type"),
        status: ph("status"),
        data: ph("data"),
        traceparent: ph("traceparent"),
        leaseOwner: ph("leaseOwner"),
        leaseUntil: ph("leaseUntil"),
      })
      .returning(),
  );
}
