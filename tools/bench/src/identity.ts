/**
 * What identity assertions cost per call (issue 25.10): signing at the gateway and verifying in
 * the runtime, each with its cache hit and its miss, and a unary gRPC call end to end on a real
 * port with the identity interceptor verifying an assertion, against the same call with none.
 * `node tools/bench/dist/identity.js` (a few seconds; not part of `npm run bench`).
 */
import { performance } from "node:perf_hooks";
import { createClient, createContextValues } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import {
  ASSERTION_HEADER,
  createAssertionSigner,
  createAssertionVerifier,
  createIdentityInterceptor,
  createService,
  generateIdentityKey,
  parseTrust,
  privateKeyFrom,
} from "@meshwork/runtime";
import { testIdentity, testRuntimeConfig } from "@meshwork/runtime/testing";

const USER = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";

function perOp(label: string, n: number, fn: (i: number) => void): void {
  for (let i = 0; i < Math.min(n, 2_000); i++) fn(i); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn(i);
  const us = ((performance.now() - t0) * 1000) / n;
  console.log(`${label.padEnd(58)} ${us.toFixed(2).padStart(8)} µs/op`);
}

const key = generateIdentityKey();
const trust = parseTrust(`gateway=${key.publicKey}`);
const signer = createAssertionSigner({ issuer: "gateway", privateKey: privateKeyFrom(key.privateKey) });
const claims = { subject: USER, roles: ["customer"], email: "a@example.com" };
perOp("sign, reused assertion (cache hit)", 200_000, () => signer.sign(claims, "users"));
perOp("sign, new assertion (a new caller each time)", 20_000, (i) =>
  signer.sign({ ...claims, subject: `u-${i}-${Math.random()}` }, "users"),
);
const token = signer.sign(claims, "users");
const verifier = createAssertionVerifier({ trust, edgeIssuers: ["gateway"], audiences: ["users"] });
perOp("verify, seen assertion (cache hit)", 200_000, () => verifier.verify(token));
const fresh = Array.from({ length: 20_000 }, (_, i) =>
  signer.sign({ ...claims, subject: `v-${i}` }, "users"),
);
let k = 0;
perOp("verify, new assertion (signature checked)", 18_000, () => {
  createAssertionVerifier({ trust, edgeIssuers: ["gateway"], audiences: ["users"] }).verify(
    fresh[k++ % fresh.length] as string,
  );
});

// The interceptor alone, as the runtime runs it before a handler: header checks, the cached
// verification, the identity headers and context value set, the policy looked up and applied.
const identity = testIdentity(["gateway"]);
const interceptor = createIdentityInterceptor({
  verifier: createAssertionVerifier({
    trust: identity.config().trust ?? new Map(),
    edgeIssuers: ["gateway"],
    audiences: ["users"],
  }),
  enforce: true,
});
const done = async (_req: unknown) => ({}) as never;
const handler = interceptor(done);
const assertion = identity.assert("gateway", claims, "users");
const request = () =>
  ({
    header: new Headers({ [ASSERTION_HEADER]: assertion, "content-type": "application/grpc" }),
    method: UserService.method.getUser,
    service: UserService,
    contextValues: createContextValues(),
  }) as never;
perOp(
  "identity interceptor, seen assertion (incl. building the request)",
  100_000,
  () => void handler(request()),
);
perOp("  the same request with no interceptor (baseline)", 100_000, () => void done(request()));

/**
 * Unary gRPC calls (the runtime's fast path), 32 in flight, on a real port: CPU time of this
 * process (client and server both) per call, in µs. The difference is what identity costs.
 */
async function endToEnd(withIdentity: boolean): Promise<number> {
  const identity = testIdentity(["gateway"]);
  const service = createService({
    name: "users",
    config: testRuntimeConfig(withIdentity ? { identity: identity.config() } : {}),
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    routes(router) {
      router.service(UserService, { getUser: async () => ({}) });
    },
  });
  const { url } = await service.start();
  const client = createClient(UserService, createGrpcTransport({ baseUrl: url }));
  const headers: Record<string, string> = withIdentity
    ? { [ASSERTION_HEADER]: identity.assert("gateway", claims, "users") }
    : {};
  const run = async (calls: number) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next++ < calls) await client.getUser({ id: USER }, { headers });
      }),
    );
  };
  await run(2_000);
  const calls = 20_000;
  const before = process.cpuUsage();
  await run(calls);
  const used = process.cpuUsage(before);
  const us = (used.user + used.system) / calls;
  await service.shutdown();
  return us;
}

const without = await endToEnd(false);
const withId = await endToEnd(true);
console.log(
  `${"GetUser over gRPC, no identity: CPU (client+server)".padEnd(58)} ${without.toFixed(1).padStart(8)} µs per call`,
);
console.log(
  `${"GetUser over gRPC, verified assertion + policy: CPU".padEnd(58)} ${withId.toFixed(1).padStart(8)} µs per call`,
);
