import type http2 from "node:http2";
import net from "node:net";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as HS } from "@meshwork/contracts/grpc/health/v1/health";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClientTransport, GuardedSessionManager } from "./client.js";
import { createService, type Service } from "./service.js";
import { StreamTable, sessionStreams } from "./stream-table.js";
import { testRuntimeConfig } from "./testing.js";

const FOUND = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const MISSING = "9d6f2a10-3c55-4f0e-8a61-2b7e4c1d9f00";

describe("the lean gRPC client transport (unary calls straight onto node:http2)", () => {
  let service: Service;
  let url: string;
  /** Calls of the slow method the server began, and those it saw end early (cancelled or late). */
  const began: string[] = [];
  const cutShort: string[] = [];
  const seenTimeouts: Array<string | null> = [];

  beforeAll(async () => {
    service = createService({
      name: "users",
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes(router) {
        router.service(UserService, {
          getUser(req, ctx) {
            seenTimeouts.push(ctx.requestHeader.get("grpc-timeout"));
            if (req.id === MISSING) {
              throw new ConnectError(`user ${req.id} not found`, Code.NotFound, { "x-why": "gone" }, [
                { desc: UserSchema, value: { id: req.id, displayName: "a detail" } },
              ]);
            }
            ctx.responseHeader.set("x-served-by", "test");
            ctx.responseTrailer.set("x-trailer", "t");
            return {
              user: create(UserSchema, {
                id: req.id,
                displayName: ctx.requestHeader.get("x-test") ?? "",
                createTime: timestampNow(),
              }),
            };
          },
          async listUsers(req, ctx) {
            if (req.pageSize === 1) {
              // Slow until its deadline or cancellation.
              began.push(req.pageToken);
              await new Promise<void>((resolve) => {
                const t = setTimeout(resolve, 10_000);
                ctx.signal.addEventListener("abort", () => {
                  clearTimeout(t);
                  cutShort.push(req.pageToken);
                  resolve();
                });
              });
              return { users: [], nextPageToken: "" };
            }
            return {
              users: Array.from({ length: req.pageSize }, (_, i) =>
                create(UserSchema, { id: `u${i}`, displayName: "x".repeat(1000) }),
              ),
              nextPageToken: "",
            };
          },
          registerUser() {
            throw new Error("never called");
          },
          login() {
            throw new Error("never called");
          },
        });
      },
    });
    ({ url } = await service.start());
  });
  afterAll(async () => {
    await service.shutdown();
  });

  const transports = (
    extra: { interceptors?: Interceptor[]; defaultTimeoutMs?: number; readMaxBytes?: number } = {},
  ) => ({
    lean: createClientTransport({ baseUrl: url, protocol: "grpc", ...extra }),
    connect: createGrpcTransport({
      baseUrl: url,
      useBinaryFormat: true,
      sessionManager: new GuardedSessionManager(url),
      ...extra,
    }),
  });
  /** The outcome of a call as a caller sees it: the answer, or the error's code, message, details. */
  const outcome = async (call: () => Promise<unknown>) => {
    try {
      return { ok: await call() };
    } catch (err) {
      const e = ConnectError.from(err);
      return {
        code: Code[e.code],
        message: e.rawMessage,
        details: e.findDetails(UserSchema).map((d) => d.displayName),
        why: e.metadata.get("x-why"),
      };
    }
  };

  it("answers, fails and carries headers, trailers and error details exactly as connect-node's transport does", async () => {
    const { lean, connect } = transports();
    const run = async (t: Transport) => {
      const users = createClient(UserService, t);
      const headers: Record<string, string | null> = {};
      const found = await users.getUser(
        { id: FOUND },
        {
          headers: { "x-test": "hello" },
          onHeader: (h) => {
            headers.servedBy = h.get("x-served-by");
          },
          onTrailer: (t) => {
            headers.trailer = t.get("x-trailer");
          },
        },
      );
      return {
        found: { id: found.user?.id, displayName: found.user?.displayName },
        headers,
        missing: await outcome(() => users.getUser({ id: MISSING })),
        invalid: await outcome(() => users.getUser({ id: "not-a-uuid" })),
      };
    };
    const viaLean = await run(lean);
    expect(viaLean).toEqual(await run(connect));
    expect(viaLean.found).toEqual({ id: FOUND, displayName: "hello" });
    expect(viaLean.headers).toEqual({ servedBy: "test", trailer: "t" });
    expect(viaLean.missing).toMatchObject({
      code: "NotFound",
      message: `user ${MISSING} not found`,
      details: ["a detail"],
      why: "gone",
    });
    expect(viaLean.invalid).toMatchObject({ code: "InvalidArgument" });
  });

  it("sends the deadline as grpc-timeout and fails a call that outlives it with DEADLINE_EXCEEDED; the server sees it end", async () => {
    const { lean } = transports({ defaultTimeoutMs: 5_000 });
    const users = createClient(UserService, lean);
    seenTimeouts.length = 0;
    await users.getUser({ id: FOUND });
    // The call's own deadline, well under the default but long enough for a loaded machine to
    // answer within it (this call must succeed).
    await users.getUser({ id: FOUND }, { timeoutMs: 2_000 });
    expect(seenTimeouts).toHaveLength(2);
    expect(Number.parseInt(seenTimeouts[0] ?? "", 10)).toBeGreaterThan(4_000);
    expect(Number.parseInt(seenTimeouts[1] ?? "", 10)).toBeLessThanOrEqual(2_000);
    const slow = await outcome(() =>
      users.listUsers({ pageSize: 1, pageToken: "deadline" }, { timeoutMs: 200 }),
    );
    expect(slow).toMatchObject({ code: "DeadlineExceeded" });
    await waitFor(() => cutShort.includes("deadline"), { what: "the server to see the call end" });
  });

  it("cancels a call in flight when its signal aborts: CANCELED here, the stream reset there", async () => {
    const users = createClient(UserService, transports().lean);
    const ac = new AbortController();
    const pending = outcome(() =>
      users.listUsers({ pageSize: 1, pageToken: "cancel" }, { signal: ac.signal }),
    );
    await waitFor(() => began.includes("cancel"), { what: "the server to begin the call" });
    ac.abort();
    expect(await pending).toMatchObject({ code: "Canceled" });
    await waitFor(() => cutShort.includes("cancel"), { what: "the server to see the cancellation" });
    // An already aborted signal never reaches the server.
    expect(await outcome(() => users.getUser({ id: FOUND }, { signal: AbortSignal.abort() }))).toMatchObject({
      code: "Canceled",
    });
  });

  it("takes large answers, refuses one over readMaxBytes, and runs hundreds of calls at once on one connection", async () => {
    const users = createClient(UserService, transports().lean);
    const big = await users.listUsers({ pageSize: 3_000 });
    expect(big.users).toHaveLength(3_000);
    expect(big.users.at(-1)?.displayName).toHaveLength(1000);
    const limited = createClient(UserService, transports({ readMaxBytes: 64 * 1024 }).lean);
    expect(await outcome(() => limited.listUsers({ pageSize: 3_000 }))).toMatchObject({
      code: "ResourceExhausted",
    });
    const answers = await Promise.all(Array.from({ length: 500 }, () => users.getUser({ id: FOUND })));
    expect(answers.every((a) => a.user?.id === FOUND)).toBe(true);
  });

  it("keeps each client session's streams in a StreamTable (finished calls are not promoted by young GCs)", async () => {
    const manager = new GuardedSessionManager(url);
    const users = createClient(UserService, createClientTransport({ baseUrl: url, sessionManager: manager }));
    await Promise.all(Array.from({ length: 50 }, () => users.getUser({ id: FOUND })));
    const stream = await manager.request("POST", "/nowhere", {}, {});
    const table = sessionStreams(stream.session as http2.Http2Session) as StreamTable<unknown>;
    expect(table).toBeInstanceOf(StreamTable);
    expect(table.size).toBe(1);
    stream.on("error", () => {});
    await new Promise<void>((resolve) => stream.close(undefined, () => resolve()));
    expect(table.size).toBe(0);
    manager.abort();
  });

  it("runs interceptors around the call, serves streams through connect-node, and fails an unreachable server as UNAVAILABLE", async () => {
    const stamp: Interceptor = (next) => (req) => {
      req.header.set("x-test", "from-interceptor");
      return next(req);
    };
    const { lean } = transports({ interceptors: [stamp] });
    const users = createClient(UserService, lean);
    expect((await users.getUser({ id: FOUND })).user?.displayName).toBe("from-interceptor");

    const ac = new AbortController();
    for await (const r of createClient(Health, lean).watch({ service: "" }, { signal: ac.signal })) {
      expect(r.status).toBe(HS.SERVING);
      break;
    }
    ac.abort();

    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const nowhere = `http://127.0.0.1:${port}`;
    const viaLean = await outcome(() =>
      createClient(UserService, createClientTransport({ baseUrl: nowhere })).getUser({ id: FOUND }),
    );
    const viaConnect = await outcome(() =>
      createClient(
        UserService,
        createGrpcTransport({ baseUrl: nowhere, sessionManager: new GuardedSessionManager(nowhere) }),
      ).getUser({ id: FOUND }),
    );
    expect(viaLean).toMatchObject({ code: "Unavailable" });
    expect(viaLean.code).toBe(viaConnect.code);
  });
});
