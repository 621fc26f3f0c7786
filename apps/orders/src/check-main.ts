import { parseArgs } from "node:util";
import { checkConsistency } from "./check.js";

/**
 * `npm run check -w @meshwork/orders -- --orders URL --inventory URL --payments URL`: prints
 * each violation and exits 1, or says the mesh is consistent.
 */
const { values } = parseArgs({
  options: { orders: { type: "string" }, inventory: { type: "string" }, payments: { type: "string" } },
});
if (!values.orders || !values.inventory || !values.payments) {
  process.stderr.write(
    "usage: check --orders URL --inventory URL --payments URL (each service's database)\n",
  );
  process.exit(2);
}
const violations = await checkConsistency({
  orders: values.orders,
  inventory: values.inventory,
  payments: values.payments,
});
for (const v of violations) process.stdout.write(`violation: ${v}\n`);
process.stdout.write(violations.length === 0 ? "consistent\n" : `${violations.length} violation(s)\n`);
process.exit(violations.length === 0 ? 0 : 1);
