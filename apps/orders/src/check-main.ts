import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { OrderService } from "@meshwork/contracts/meshwork/orders/v1/orders";
import { PaymentService } from "@meshwork/contracts/meshwork/payments/v1/payments";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { checkConsistency } from "./check.js";

/**
 * `npm run check -w @meshwork/orders -- [--gateway URL] --email E --password P`: logs in as an
 * admin through the gateway, prints each violation and exits 1, or says the mesh is consistent.
 */
const { values } = parseArgs({
  options: {
    gateway: { type: "string", default: "http://127.0.0.1:8080" },
    email: { type: "string" },
    password: { type: "string" },
  },
});
if (!values.email || !values.password) {
  process.stderr.write("usage: check [--gateway URL] --email ADMIN_EMAIL --password PASSWORD\n");
  process.exit(2);
}
const transport = createGrpcTransport({ baseUrl: values.gateway });
const { accessToken } = await createClient(UserService, transport).login({
  email: values.email,
  password: values.password,
});
const violations = await checkConsistency({
  orders: createClient(OrderService, transport),
  inventory: createClient(InventoryService, transport),
  payments: createClient(PaymentService, transport),
  admin: { headers: { authorization: `Bearer ${accessToken}` } },
});
for (const v of violations) process.stdout.write(`violation: ${v}\n`);
process.stdout.write(violations.length === 0 ? "consistent\n" : `${violations.length} violation(s)\n`);
process.exit(violations.length === 0 ? 0 : 1);
