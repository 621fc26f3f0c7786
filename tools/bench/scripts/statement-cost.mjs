// CPU per saga-step record in the service's process (issue 24): the saga's UPDATE as Drizzle
// builds it on every call against the same statement prepared once (`prepareStatement`), each in
// a transaction of its own on a database created for the run (orders' migrations) and dropped.
// Rounds alternate, the order swapped each round; medians of process.cpuUsage() per transaction.
//   node tools/bench/scripts/statement-cost.mjs [rounds=8] [transactions per round=2000]
import { resolve } from "node:path";
import { openDatabase, prepareStatement } from "@meshwork/db";
import { sagaTable } from "@meshwork/saga";
import { createTestDatabase } from "@meshwork/testing";
import { and, eq, sql } from "drizzle-orm";

const rounds = Number(process.argv[2] ?? 8);
const perRound = Number(process.argv[3] ?? 2000);
const t = sagaTable();
const OWNER = "bench";
const ID = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a31";

const testDb = await createTestDatabase("mw_stmtcost");
const handle = await openDatabase(
  {
    url: testDb.url,
    dataDir: "unused",
    pool: { max: 1, idleTimeoutS: 5, maxLifetimeS: 0, connectTimeoutS: 5 },
  },
  { sagas: t },
);
try {
  await handle.migrate(resolve(import.meta.dirname, "../../../apps/orders/drizzle"));
  const { db } = handle;
  await db.insert(t).values({ id: ID, type: "bench", status: "running", data: {}, leaseOwner: OWNER });
  const changes = () => ({
    step: 0,
    attempts: 0,
    transientAttempts: 0,
    transientSince: null,
    lastError: null,
    leaseUntil: new Date(Date.now() + 30_000),
  });
  const log = () =>
    JSON.stringify([
      { step: "reserve", phase: "action", outcome: "done", attempt: 1, at: new Date().toISOString() },
    ]);
  // As libs/saga built it per call before.
  const built = (tx) =>
    tx
      .update(t)
      .set({ ...changes(), history: sql`${t.history} || ${log()}::jsonb`, updatedAt: new Date() })
      .where(and(eq(t.id, ID), eq(t.leaseOwner, OWNER), eq(t.status, "running"), eq(t.step, 0)))
      .returning({ id: t.id });
  const set = {};
  for (const k of Object.keys(changes())) set[k] = sql.placeholder(k);
  set.history = sql`${t.history} || ${sql.placeholder("appended")}::jsonb`;
  set.updatedAt = sql.placeholder("updatedAt");
  const statement = prepareStatement("bench_record", (q) =>
    q
      .update(t)
      .set(set)
      .where(
        and(
          eq(t.id, sql.placeholder("id")),
          eq(t.leaseOwner, sql.placeholder("owner")),
          eq(t.status, sql.placeholder("status")),
          eq(t.step, sql.placeholder("step0")),
        ),
      )
      .returning({ id: t.id }),
  );
  const prepared = (tx) =>
    statement.execute(tx, {
      ...changes(),
      appended: log(),
      updatedAt: new Date(),
      id: ID,
      owner: OWNER,
      status: "running",
      step0: 0,
    });
  // The history grows per call: reset it between rounds so both variants update the same row size.
  const reset = () => db.update(t).set({ history: [] }).where(eq(t.id, ID));
  const measure = async (work) => {
    await reset();
    const start = process.cpuUsage();
    for (let i = 0; i < perRound; i++) {
      const [row] = await db.transaction((tx) => work(tx));
      if (!row) throw new Error("no row updated");
    }
    const used = process.cpuUsage(start);
    return (used.user + used.system) / perRound;
  };
  await measure(built);
  await measure(prepared);
  const results = { built: [], prepared: [] };
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? ["built", "prepared"] : ["prepared", "built"];
    for (const name of order) results[name].push(await measure(name === "built" ? built : prepared));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [name, xs] of Object.entries(results))
    console.log(
      `${name}: median ${median(xs).toFixed(1)} us CPU per transaction (rounds: ${xs.map((x) => x.toFixed(0)).join(" ")})`,
    );
} finally {
  await handle.close();
  await testDb.drop();
}
