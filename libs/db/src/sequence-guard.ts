import { sql } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import { type Queryable, queryRows } from "./database.js";

/**
 * A table keeping, per entity, the highest change-capture sequence applied: the entity's id as
 * primary key, `sequence` and `appliedAt` columns. Each service declares and migrates its own
 * (e.g. inventory's `legacy_sync`, orders' `legacy_order_sync`); only the claim is shared.
 */
export type SequenceGuardTable = PgTable & { sequence: PgColumn; appliedAt: PgColumn };

/**
 * Records `sequence` as the latest capture applied to entity `id` (its row in `table`, keyed by
 * `key`), unless an equal or newer one is recorded already. True: this change is the newest seen,
 * apply it. False: it is stale (a redelivery, or an older capture arriving late), skip it. Run it
 * in the transaction that applies the change, so the mark and the effect commit together; two
 * claims on one entity at once serialize on its row, and the second sees the first's mark.
 */
export async function claimSequence(
  tx: Queryable,
  table: SequenceGuardTable,
  key: PgColumn,
  id: string,
  sequence: number,
): Promise<boolean> {
  const k = sql.identifier(key.name);
  const seq = sql.identifier(table.sequence.name);
  const claimed = await queryRows(
    tx,
    sql`insert into ${table} (${k}, ${seq}) values (${id}, ${sequence})
        on conflict (${k}) do update set ${seq} = excluded.${seq}, ${sql.identifier(table.appliedAt.name)} = now()
        where ${table}.${seq} < excluded.${seq}
        returning ${k}`,
  );
  return claimed.length > 0;
}
