import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import {
  answerStatus,
  type FuzzRequest,
  fuzzParameters,
  fuzzRequestArb,
  isInternal,
  loadCorpus,
  rawExchange,
} from "@meshwork/testing";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { unaryMessage } from "./grpc-wire.js";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

// Issue 26.3: fuzz properties of the runtime's gRPC framing and status trailers. The corpus files
// in fuzz-corpus/ run first every time (regressions); FUZZ_RUNS=100000 npm run fuzz runs long.

const corpus = (name: string) => loadCorpus<never>(new URL(`../fuzz-corpus/${name}.json`, import.meta.url));
const USER_ID = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const PATHS = [
  "/meshwork.users.v1.UserService/GetUser",
  "/meshwork.users.v1.UserService/ListUsers",
  "/meshwork.users.v1.UserService/RegisterUser",
  "/meshwork.users.v1.UserService/Nope",
  "/grpc.health.v1.Health/Check",
];

describe("unaryMessage (a unary call's one framed message)", () => {
  it("never throws; refuses malformed input with a code other than INTERNAL and a message", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const r = unaryMessage(Buffer.from(bytes), "input");
        if (r instanceof ConnectError) {
          expect(r.code).not.toBe(Code.Internal);
          expect(r.rawMessage.length).toBeGreaterThan(0);
        } else {
          expect(r.length).toBe(bytes.length - 5);
        }
      }),
      fuzzParameters(corpus("unary-message") as Uint8Array[], 2_000),
    );
  });
});

describe.each([
  ["fast path on", true],
  ["fast path off", false],
])("a service over real sockets (%s)", (_name, fastPath) => {
  let service: Service;
  let url: string;
  beforeAll(async () => {
    service = createService({
      name: "users",
      config: testRuntimeConfig(),
      fastPath,
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, {
          async getUser(req, ctx) {
            const message = ctx.requestHeader.get("x-fuzz-message");
            if (message !== null) {
              throw new ConnectError(Buffer.from(message, "base64").toString(), Code.FailedPrecondition);
            }
            return { user: create(UserSchema, { id: req.id }) };
          },
          async listUsers() {
            return { users: [], nextPageToken: "" };
          },
        });
      },
    });
    ({ url } = await service.start());
  });
  afterAll(async () => {
    await service?.shutdown();
  });

  it("answers any request in time, never INTERNAL, and its memory stays flat", async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    await fc.assert(
      fc.asyncProperty(fuzzRequestArb(PATHS), async (req: FuzzRequest) => {
        const a = await rawExchange(url, req, 5_000);
        expect(a.timedOut, "no answer within 5 s").toBe(false);
        expect(isInternal(a), `INTERNAL: ${JSON.stringify(answerStatus(a))}`).toBe(false);
      }),
      fuzzParameters(corpus("requests") as FuzzRequest[], 60),
    );
    // Bounded, not exact: garbage from the runs may not be collected yet.
    expect(process.memoryUsage().heapUsed - heapBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it("carries any status message to the client as it was thrown (gRPC trailers, gRPC-Web, Connect)", async () => {
    const request = Uint8Array.of(0x0a, USER_ID.length, ...Buffer.from(USER_ID));
    const framed = new Uint8Array(Buffer.concat([Buffer.of(0, 0, 0, 0, request.length), request]));
    const protocols: Array<{ h2: boolean; headers: Record<string, string>; body: Uint8Array }> = [
      { h2: true, headers: { "content-type": "application/grpc", te: "trailers" }, body: framed },
      { h2: false, headers: { "content-type": "application/grpc-web+proto" }, body: framed },
      { h2: true, headers: { "content-type": "application/proto" }, body: request },
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          message: fc.string({ unit: "binary", maxLength: 60 }),
          protocol: fc.nat(protocols.length - 1),
        }),
        async ({ message, protocol }) => {
          const p = protocols[protocol] as (typeof protocols)[number];
          const a = await rawExchange(
            url,
            {
              path: PATHS[0] as string,
              headers: { ...p.headers, "x-fuzz-message": Buffer.from(message).toString("base64") },
              body: p.body,
              h2: p.h2,
            },
            5_000,
          );
          const s = answerStatus(a);
          expect(s.code ?? s.connectCode).toBe(
            s.code === undefined ? "failed_precondition" : Code.FailedPrecondition,
          );
          expect(s.message).toBe(Buffer.from(message).toString());
        },
      ),
      fuzzParameters(
        (corpus("status-messages") as string[]).flatMap((message) =>
          protocols.map((_, protocol) => ({ message, protocol })),
        ),
        60,
      ),
    );
  });
});
