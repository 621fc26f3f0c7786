import { afterAll, beforeAll, describe, it } from "vitest";
import { type Clients, connect, grpcJsCases } from "./grpc-js-cases.js";
import { startTargets, type Targets } from "./targets.js";

// grpc/grpc's interop cases with @grpc/grpc-js as the client, against grpc.testing.TestService on
// the Meshwork runtime: directly, and through the gateway (h2c, routed by the service prefix).

let targets: Targets;
beforeAll(async () => {
  targets = await startTargets();
});
afterAll(async () => {
  await targets?.stop();
});

describe.each(["direct", "gateway"] as const)("grpc-js, %s", (where) => {
  let plain: Clients;
  let gzip: Clients;
  beforeAll(() => {
    plain = connect(targets[where]);
    gzip = connect(targets[where], { gzip: true });
  });
  afterAll(() => {
    plain?.close();
    gzip?.close();
  });

  for (const [name, run] of Object.entries(grpcJsCases)) {
    it(name, () => run(plain, gzip), 20_000);
  }
});
