import { readFileSync } from "node:fs";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { meshworkFiles, platformFiles } from "@meshwork/contracts";
import { Health, HealthCheckResponse_ServingStatus as HS } from "@meshwork/contracts/grpc/health/v1/health";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
} from "@meshwork/contracts/grpc/reflection/v1/reflection";
import {
  file_meshwork_users_v1_users,
  GetUserRequestSchema,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { createService, type Service, ServingStatus } from "@meshwork/runtime";
import { heapGrowingPercent, StreamTable, sessionStreams } from "@meshwork/runtime/internal";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { captureLogs, grpc, grpcJsClient, grpcJsUnary, loadGrpcJsPackage, waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// For the leak check: a gc() to call between measurements.
setFlagsFromString("--expose-gc");

import { parseUpstreams } from "@meshwork/discovery";
import { type GatewayConfig, loadConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";
import { parseRateLimits } from "./ratelimit.js";
import type { Endpoint } from "./upstreams.js";

const OK = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const MISSING = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12";
const SLOW = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a14";

/** An in-memory users service: the upstream. It echoes what the gateway sent it. */
async function startUpstream(): Promise<{
  service: Service;
  url: string;
  seen: Array<Record<string, string | null>>;
}> {
  const seen: Array<Record<string, string | null>> = [];
  const service = createService({
    name: "users",
    config: testRuntimeConfig(),
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    routes(router) {
      router.service(UserService, {
        async getUser(req, ctx) {
          seen.push({
            "x-request-id": ctx.requestHeader.get("x-request-id"),
            "grpc-timeout": ctx.requestHeader.get("grpc-timeout"),
            "connect-timeout-ms": ctx.requestHeader.get("connect-timeout-ms"),
            traceparent: ctx.requestHeader.get("traceparent"),
            tracestate: ctx.requestHeader.get("tracestate"),
            baggage: ctx.requestHeader.get("baggage"),
          });
          if (req.id === SLOW) {
            await new Promise<void>((resolve) => {
              ctx.signal.addEventListener("abort", () => resolve(), { once: true });
              setTimeout(resolve, 5_000).unref();
            });
          }
          if (req.id !== OK && req.id !== SLOW) throw new ConnectError("user is missing", Code.NotFound);
          ctx.responseTrailer.set("x-upstream-trailer", "kept");
          return {
            user: create(UserSchema, {
              id: req.id,
              email: "a@example.com",
              createTime: timestampFromMs(Date.UTC(2026, 0, 1)),
            }),
          };
        },
        async listUsers(req) {
          // page_size users of about 1 KiB each: a large answer on demand.
          const pad = "x".repeat(1000);
          return {
            users: Array.from({ length: req.pageSize }, (_, i) => ({ id: `${i}`, displayName: pad })),
            nextPageToken: "",
          };
        },
        async registerUser() {
          throw new ConnectError("not here", Code.Unimplemented);
        },
        async login() {
          throw new ConnectError("not here", Code.Unimplemented);
        },
      });
    },
  });
  const { url } = await service.start();
  return { service, url, seen };
}

/** A framed GetUserRequest for `id`. */
function frameOf(id: string): Buffer {
  const bytes = toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { id }));
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** A port nothing listens on. */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe("gateway (real sockets, a real upstream service)", () => {
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;
  let port: number;
  let dead: number;
  const log = captureLogs();

  beforeAll(async () => {
    upstream = await startUpstream();
    dead = await deadPort();
    const config: GatewayConfig = {
      host: "127.0.0.1",
      port: 0,
      adminHost: "127.0.0.1",
      adminPort: 0,
      logLevel: "info",
      upstreams: parseUpstreams(
        // users: a dead endpoint first, then the live one (outlier ejection moves traffic);
        // health: routed to the same service, for a server-streaming call;
        // notifications: nothing answers.
        `users=http://127.0.0.1:${dead},${upstream.url};grpc.health.v1=${upstream.url};grpc.reflection.v1=${upstream.url};notifications=http://127.0.0.1:${dead}`,
      ),
      jwksUrl: "http://127.0.0.1:1/unused",
      jwksCooldownMs: 5_000,
      jwtIssuer: "meshwork-users",
      jwtAudience: "meshwork",
      rateLimits: parseRateLimits("meshwork.users.v1.UserService/ListUsers=4/1s:2"),
      corsOrigins: ["https://app.example"],
      maxRequestBytes: 64 * 1024,
      retryMaxAttempts: 3,
      // Long enough that the bounds below (a client's shorter deadline wins, what is left of this
      // one upstream) keep hundreds of milliseconds of slack on a loaded two-core machine.
      defaultTimeoutMs: 1_000,
      maxTimeoutMs: 2_000,
      shutdownGraceMs: 1_000,
      heapGrowingPercent: 30,
    };
    const files = [...meshworkFiles, ...platformFiles];
    gateway = createGateway({
      config,
      files,
      // Routing alone here: every method open (auth.int.test.ts covers the contracts' policies).
      policies: new Map(
        files.flatMap((f) =>
          f.services.flatMap((s) =>
            s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const]),
          ),
        ),
      ),
      logger: createLogger({ service: "gateway", destination: log.destination }),
      outlier: { consecutiveFailures: 3, baseEjectionMs: 60_000, maxEjectionMs: 60_000 },
    });
    ({ url, adminUrl, port } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  it("ejects the dead endpoint after consecutive failures, then serves every call from the live one", async () => {
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      // RegisterUser is not idempotent: never retried, so each failure reaches the client.
      outcomes.push(
        await users.registerUser({ email: "a@example.com", password: "long enough", displayName: "A" }).then(
          () => "OK",
          (e: unknown) => Code[ConnectError.from(e).code] ?? "?",
        ),
      );
    }
    // Least-request picks the first endpoint while both are idle: three failures eject it.
    // (The live upstream answers RegisterUser with UNIMPLEMENTED.)
    expect(outcomes).toEqual([
      "Unavailable",
      "Unavailable",
      "Unavailable",
      ...Array(7).fill("Unimplemented"),
    ]);
    const clusters = (await (await fetch(`${adminUrl}/clusters?format=json`)).json()) as {
      clusters: Array<{
        name: string;
        endpoints: Array<{ url: string; ejected: boolean; rq_total: number }>;
      }>;
    };
    // The gateway set (and logged) the heap growing percent of its configuration.
    expect(log.lines.find((l) => l.msg === "listening")?.heapGrowingPercent).toBe(30);
    expect(heapGrowingPercent()).toBe(30);
    const users_ = clusters.clusters.find((c) => c.name === "users");
    expect(users_?.endpoints.map((e) => e.ejected)).toEqual([true, false]);
    expect(users_?.endpoints.map((e) => e.rq_total)).toEqual([3, 7]);
    const text = await (await fetch(`${adminUrl}/clusters`)).text();
    expect(text).toContain(`users::127.0.0.1:${dead}::health_flags::/failed_outlier_check`);
    // The upstream connection keeps its streams in the runtime's StreamTable, not Node's Map.
    const live = gateway.upstreams.clusters.get("users")?.[1];
    expect(sessionStreams(gateway.upstreams.session(live as Endpoint))).toBeInstanceOf(StreamTable);
  });

  it("forwards gRPC (grpc-js), with status, message, trailers, a request id and the deadline upstream", async () => {
    const pkg = loadGrpcJsPackage("meshwork/users/v1/users.proto");
    const client = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
    const before = upstream.seen.length;
    try {
      const ok = await grpcJsUnary<{ user: { id: string } }>(
        client,
        "GetUser",
        { id: OK },
        {
          metadata: { "x-request-id": "req-from-client-1" },
        },
      );
      expect(ok.user.id).toBe(OK);
      expect(upstream.seen[before]).toMatchObject({ "x-request-id": "req-from-client-1" });
      // What is left of the route's 1 s deadline when the call leaves the gateway.
      const left = Number(/^(\d+)m$/.exec(upstream.seen[before]?.["grpc-timeout"] ?? "")?.[1]);
      expect(left).toBeGreaterThan(700);
      expect(left).toBeLessThanOrEqual(1_000);
      expect(upstream.seen[before]?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
      const err = await grpcJsUnary(client, "GetUser", { id: MISSING }).catch((e: grpc.ServiceError) => e);
      expect(err).toMatchObject({ code: grpc.status.NOT_FOUND, details: "user is missing" });
      // A generated id when the client sends none (or a malformed one).
      await grpcJsUnary(
        client,
        "GetUser",
        { id: OK },
        { metadata: { "x-request-id": "bad id with spaces" } },
      );
      expect(upstream.seen.at(-1)?.["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      client.close();
    }
    const line = await waitFor(() =>
      log.lines.find((l) => l.msg === "access" && l.request_id === "req-from-client-1"),
    );
    expect(line).toMatchObject({
      method: "/meshwork.users.v1.UserService/GetUser",
      protocol: "grpc",
      status: "OK",
    });
    expect(typeof line.duration_ms).toBe("number");
    expect(line.bytes_out).toBeGreaterThan(0);
    expect(line.bytes_in).toBeGreaterThan(0);
    expect(line.upstream).toMatch(/^https?:\/\/127\.0\.0\.1:\d+/);
    // The line joins the call's trace: the same trace id the gateway sent upstream.
    const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(upstream.seen[before]?.traceparent ?? "");
    expect(line.trace_id).toBe(sent?.[1]);
    expect(line.span_id).toMatch(/^[0-9a-f]{16}$/);
  });

  it("continues the client's trace upstream: its trace id, tracestate and baggage, a span id of its own", async () => {
    const before = upstream.seen.length;
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const res = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        traceparent: `00-${traceId}-b7ad6b7169203331-01`,
        // Spaced: what the propagators write is re-serialized without them, so these tell the
        // gateway's own headers from the client's, which are passed along and then replaced.
        tracestate: "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7",
        baggage: "tenant=acme, tier=gold",
      },
      body: JSON.stringify({ id: OK }),
    });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const seen = upstream.seen[before];
    const sent = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen?.traceparent ?? "");
    expect(sent?.[1]).toBe(traceId);
    expect(sent?.[2]).not.toBe("b7ad6b7169203331");
    expect(seen).toMatchObject({
      tracestate: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
      baggage: "tenant=acme,tier=gold",
    });
    // Without a trace from the client, a new one (and nothing else).
    const fresh = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: OK }),
    });
    await fresh.arrayBuffer();
    const next = upstream.seen[before + 1];
    expect(next?.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
    expect(next?.traceparent?.slice(3, 35)).not.toBe(traceId);
    expect(next).toMatchObject({ tracestate: null, baggage: null });
  });

  it("forwards Connect (binary over h2, JSON over HTTP/1.1 with fetch) and gRPC-Web", async () => {
    for (const transport of [
      createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true }),
      createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1" }),
      createGrpcWebTransport({ baseUrl: url, httpVersion: "2" }),
    ]) {
      const users = createClient(UserService, transport);
      expect((await users.getUser({ id: OK })).user?.id).toBe(OK);
      await expect(users.getUser({ id: MISSING })).rejects.toMatchObject({ code: Code.NotFound });
    }
    const res = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "curl-1" },
      body: JSON.stringify({ id: OK }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("curl-1");
    expect(((await res.json()) as { user: { id: string } }).user.id).toBe(OK);
    const invalid = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(invalid.status).toBe(400);
    expect(((await invalid.json()) as { code: string }).code).toBe("invalid_argument");
  });

  it("forwards a bidirectional stream (server reflection) message by message", async () => {
    const reflection = createClient(ServerReflection, createGrpcTransport({ baseUrl: url }));
    const requests = async function* () {
      yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
      yield create(ServerReflectionRequestSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "meshwork.users.v1.UserService" },
      });
    };
    const answers: string[] = [];
    for await (const res of reflection.serverReflectionInfo(requests(), { timeoutMs: 2_000 })) {
      answers.push(res.messageResponse.case ?? "none");
    }
    expect(answers).toEqual(["listServicesResponse", "fileDescriptorResponse"]);
  });

  it("passes on an idempotent call's answer larger than what it holds back for a retry, whole", async () => {
    // ListUsers is retryable, so its answer is held until its end up to 256 KiB, then streamed.
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    const res = await users.listUsers({ pageSize: 700 });
    expect(res.users).toHaveLength(700);
    expect(res.users.at(-1)?.displayName).toBe("x".repeat(1000));
  });

  it("forwards a server stream with its messages and trailers", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: url }));
    const abort = new AbortController();
    const statuses: HS[] = [];
    for await (const r of health.watch({ service: "" }, { signal: abort.signal, timeoutMs: 2_000 })) {
      statuses.push(r.status);
      if (statuses.length === 1) break;
    }
    expect(statuses).toEqual([HS.SERVING]);
    const check = await createClient(Health, createGrpcTransport({ baseUrl: url })).check({ service: "" });
    expect(check.status).toBe(HS.SERVING);
  });

  it("answers UNIMPLEMENTED for an unknown route and UNAVAILABLE at once for a dead upstream, in the client's protocol", async () => {
    const pkg = loadGrpcJsPackage("meshwork/users/v1/users.proto");
    const stray = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
    try {
      // grpc-js speaks to a path no route covers: a made-up service with the users shape.
      const fn = (
        stray as unknown as { makeUnaryRequest: grpc.Client["makeUnaryRequest"] }
      ).makeUnaryRequest.bind(stray);
      const err = await new Promise<grpc.ServiceError>((resolve) =>
        fn(
          "/meshwork.nope.v1.NopeService/Nope",
          (x: Buffer) => x,
          (x: Buffer) => x,
          Buffer.alloc(0),
          (e) => resolve(e as grpc.ServiceError),
        ),
      );
      expect(err).toMatchObject({ code: grpc.status.UNIMPLEMENTED });
      expect(err.details).toContain("no route for /meshwork.nope.v1.NopeService/Nope");
    } finally {
      stray.close();
    }
    const res = await fetch(`${url}/meshwork.nope.v1.NopeService/Nope`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(501);
    expect(await res.json()).toMatchObject({ code: "unimplemented" });

    const began = Date.now();
    const notifications = await fetch(
      `${url}/meshwork.notifications.v1.NotificationService/ListNotifications`,
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      },
    );
    expect(notifications.status).toBe(503);
    expect(await notifications.json()).toMatchObject({ code: "unavailable" });
    expect(Date.now() - began).toBeLessThan(1_000);
  });

  it("ends a slow call with DEADLINE_EXCEEDED at the route's default deadline, and honours a client's shorter one", async () => {
    let began = Date.now();
    const res = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: SLOW }),
    });
    expect(await res.json()).toMatchObject({ code: "deadline_exceeded" });
    expect(Date.now() - began).toBeGreaterThanOrEqual(950);
    expect(Date.now() - began).toBeLessThan(3_000);
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    began = Date.now();
    await expect(users.getUser({ id: SLOW }, { timeoutMs: 150 })).rejects.toMatchObject({
      code: Code.DeadlineExceeded,
    });
    // Well before the route's 1 s: the client's 150 ms ended it.
    expect(Date.now() - began).toBeLessThan(800);
  });

  it("survives bad input: oversized, broken prefixes, huge headers, malformed HTTP/2, a client that stops reading", async () => {
    const h2 = await import("node:http2");
    const call = (path: string, body: Buffer, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; grpcStatus?: string; error?: string }>((resolve) => {
        const session = h2.connect(url);
        session.on("error", () => {});
        const req = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          ...headers,
        });
        const out: { status: number; grpcStatus?: string; error?: string } = { status: 0 };
        req.on("response", (h) => {
          out.status = Number(h[":status"]);
          if (h["grpc-status"] !== undefined) out.grpcStatus = String(h["grpc-status"]);
        });
        req.on("trailers", (t) => {
          out.grpcStatus = String(t["grpc-status"]);
        });
        req.on("error", (e: NodeJS.ErrnoException) => {
          out.error = e.code ?? e.message;
        });
        req.resume();
        req.on("close", () => {
          session.close();
          resolve(out);
        });
        req.end(body);
      });
    const GET = "/meshwork.users.v1.UserService/GetUser";
    // Over the gateway's request size limit (64 KiB here).
    const big = Buffer.alloc(100 * 1024);
    big.writeUInt32BE(big.length - 5, 1);
    expect(await call(GET, big)).toMatchObject({ grpcStatus: String(Code.ResourceExhausted) });
    // A length prefix promising more than comes: forwarded as is, refused by the service.
    const broken = Buffer.from([0, 0, 0, 0, 50, 1, 2, 3]);
    expect(await call(GET, broken)).toMatchObject({ grpcStatus: String(Code.InvalidArgument) });
    // Headers far over the listener's limit: refused, nothing else affected.
    const huge = await call(GET, broken, { "x-huge": "y".repeat(64 * 1024) });
    expect(huge.grpcStatus === undefined || huge.grpcStatus !== "0").toBe(true);
    const h1huge = await fetch(`${url}${GET}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-huge": "y".repeat(64 * 1024) },
      body: "{}",
    }).then(
      (r) => r.status,
      () => 0,
    );
    expect([0, 431]).toContain(h1huge);
    // Malformed HTTP/2: the preface, then frames of garbage.
    await new Promise<void>((resolve) => {
      const sock = net.connect(port, "127.0.0.1", () => {
        sock.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        sock.write(Buffer.from([0, 0, 4, 0xff, 0xff, 0, 0, 0, 1, 1, 2, 3, 4, 0, 0, 0, 9, 0]));
        sock.end(Buffer.alloc(512, 0xab));
      });
      sock.on("error", () => resolve());
      sock.on("close", () => resolve());
      sock.resume();
    });

    // A client that stops reading a large answer: the gateway takes the answer off the service
    // (a paused upstream stream would leave it in the service's HTTP/2 session, which every
    // client shares: issue 25.2) and counts what the client has not taken against its limit; the
    // call ends when the client goes.
    const session = h2.connect(url, { settings: { initialWindowSize: 16 * 1024 } });
    session.on("error", () => {});
    const stuck = session.request({
      ":method": "POST",
      ":path": "/meshwork.users.v1.UserService/ListUsers",
      "content-type": "application/json",
      "x-request-id": "stuck-reader",
      "connect-timeout-ms": "2000", // the most the gateway allows: the answer takes its time to encode
    });
    stuck.on("error", () => {});
    const answering = new Promise((resolve) => stuck.once("response", resolve));
    stuck.end(JSON.stringify({ pageSize: 3000 })); // ~3 MB of answer, never read
    await answering;
    await waitFor(
      async () => {
        const c = (await (await fetch(`${adminUrl}/clusters?format=json`)).json()) as {
          clusters: Array<{ name: string; endpoints: Array<{ rq_active: number }> }>;
        };
        return c.clusters.find((x) => x.name === "users")?.endpoints.every((e) => e.rq_active === 0);
      },
      { what: "the service done with the stuck reader's call, which the client has not read" },
    );
    stuck.close(h2.constants.NGHTTP2_CANCEL);
    session.close();
    const line = await waitFor(() =>
      log.lines.find((l) => l.msg === "access" && l.request_id === "stuck-reader"),
    );
    // The call ended when its client went (or, on a slow machine, at its deadline first), with
    // the answer taken from the service and not read.
    expect(["client_gone", "DeadlineExceeded"]).toContain(line.status);

    // A bounded fuzz loop: random paths, content types, headers and bodies, over both protocols.
    let seed = 42;
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const paths = [
      GET,
      "/meshwork.users.v1.UserService/Nope",
      "/x",
      "/",
      "/meshwork.users.v1.UserService/",
      "//",
    ];
    const types = [
      "application/grpc",
      "application/grpc-web+proto",
      "application/json",
      "application/proto",
      "application/connect+proto",
      "text/plain",
      "",
    ];
    for (let i = 0; i < 150; i++) {
      const body = Buffer.alloc(rand(300));
      for (let j = 0; j < body.length; j++) body[j] = rand(256);
      const path = paths[rand(paths.length)] as string;
      const ct = types[rand(types.length)] as string;
      if (rand(2) === 0) {
        const r = await call(path, body, {
          "content-type": ct,
          "grpc-timeout": ["1S", "x", "99999999H"][rand(3)] as string,
        });
        expect(r.status === 0 ? r.error : r.status).toBeDefined();
      } else {
        const status = await fetch(`${url}${path}`, {
          method: "POST",
          headers: { "content-type": ct || "x/y" },
          body,
        }).then(
          (r) => r.status,
          () => -1,
        );
        expect(status).not.toBe(-1);
      }
    }
    // Still serving, nothing left in flight.
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    expect((await users.getUser({ id: OK })).user?.id).toBe(OK);
    await waitFor(
      async () => {
        const c = (await (await fetch(`${adminUrl}/clusters?format=json`)).json()) as {
          clusters: Array<{ endpoints: Array<{ rq_active: number }> }>;
        };
        return c.clusters.every((x) => x.endpoints.every((e) => e.rq_active === 0));
      },
      { what: "no call left in flight" },
    );
  });

  it("holds a route's rate limit per client with RESOURCE_EXHAUSTED and quota headers, and recovers", async () => {
    const list = () =>
      fetch(`${url}/meshwork.users.v1.UserService/ListUsers`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
    // The bucket holds 2 and refills 4 a second: three sent together cannot all pass. On a loaded
    // machine calls one after another may each find a refilled token, so the bound counts refills.
    const started = performance.now();
    let passed = 0;
    let limited: Response | undefined;
    for (let round = 0; round < 5 && !limited; round++) {
      for (const r of await Promise.all([list(), list(), list()])) {
        if (r.status !== 200 && !limited) limited = r;
        else {
          if (r.status === 200) passed++;
          await r.body?.cancel();
        }
      }
    }
    const refills = Math.floor(((performance.now() - started) / 1000) * 4);
    expect(passed).toBeGreaterThanOrEqual(2);
    expect(passed).toBeLessThanOrEqual(2 + refills);
    if (!limited) throw new Error(`no call was limited (${passed} passed)`);
    expect(limited.status).toBe(429);
    expect(await limited.json()).toMatchObject({ code: "resource_exhausted" });
    expect(limited.headers.get("retry-after")).toBe("1");
    expect(limited.headers.get("x-ratelimit-limit")).toBe("2");
    expect(limited.headers.get("x-ratelimit-remaining")).toBe("0");
    // gRPC clients get the same, as a status. Three at once: on a loaded machine a single call
    // can arrive after the bucket refilled a token (4 a second).
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    const burst = await Promise.allSettled([users.listUsers({}), users.listUsers({}), users.listUsers({})]);
    const refused = burst.flatMap((r) => (r.status === "rejected" ? [ConnectError.from(r.reason)] : []));
    expect(refused.length).toBeGreaterThan(0);
    for (const err of refused) expect(err.code).toBe(Code.ResourceExhausted);
    // Other routes are not limited; the bucket refills (4 a second).
    expect((await users.getUser({ id: OK })).user?.id).toBe(OK);
    await waitFor(async () => (await list()).status === 200, { what: "the bucket to refill" });
  });

  it("answers CORS preflights for allowed origins and exposes the status headers to browsers", async () => {
    const preflight = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "OPTIONS",
      headers: {
        origin: "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-grpc-web,authorization",
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(preflight.headers.get("access-control-allow-methods")).toBe("POST, GET");
    const allowed = preflight.headers.get("access-control-allow-headers")?.toLowerCase() ?? "";
    for (const h of [
      "content-type",
      "x-grpc-web",
      "authorization",
      "connect-protocol-version",
      "grpc-timeout",
    ]) {
      expect(allowed).toContain(h);
    }
    const res = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { origin: "https://app.example", "content-type": "application/json" },
      body: JSON.stringify({ id: OK }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("https://app.example");
    const exposed = res.headers.get("access-control-expose-headers")?.toLowerCase() ?? "";
    for (const h of ["grpc-status", "grpc-message", "x-request-id", "retry-after"])
      expect(exposed).toContain(h);
    const stranger = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "OPTIONS",
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    // Issue 25.9: an origin not configured is refused, not merely left without CORS headers.
    expect(stranger.status).toBe(403);
    expect(stranger.headers.get("access-control-allow-origin")).toBeNull();
    expect(stranger.headers.get("access-control-allow-methods")).toBeNull();
  });

  it("serves its admin endpoints: ready, config dump, Prometheus stats", async () => {
    expect(await (await fetch(`${adminUrl}/ready`)).text()).toBe("LIVE\n");
    const dump = (await (await fetch(`${adminUrl}/config_dump`)).json()) as {
      routes: Array<{ prefix: string; cluster: string }>;
      defaultTimeoutMs: number;
    };
    expect(dump.routes).toContainEqual(
      expect.objectContaining({ prefix: "/meshwork.users.v1.UserService/", cluster: "users" }),
    );
    expect(dump.defaultTimeoutMs).toBe(1_000);
    const stats = await (await fetch(`${adminUrl}/stats/prometheus`)).text();
    expect(stats).toMatch(
      /gateway_requests_total\{[^}]*route="meshwork.users.v1.UserService"[^}]*code="OK"[^}]*\} \d+/,
    );
    expect(stats).toMatch(/gateway_duration_bucket\{/);
    expect(stats).toMatch(
      /gateway_upstream_requests_total\{[^}]*upstream="http:\/\/127\.0\.0\.1:\d+"[^}]*code="OK"[^}]*\} \d+/,
    );
    expect(stats).toMatch(/gateway_upstream_active\{/);
    // The gateway package's version (the build's commit unknown here: MESHWORK_BUILD_COMMIT unset).
    expect(stats).toMatch(
      /meshwork_build_info\{[^}]*service_name="gateway"[^}]*version="\d+\.\d+\.\d+"[^}]*\} 1\n/,
    );
    expect((await fetch(`${adminUrl}/nope`)).status).toBe(404);
  });
});

describe("grpcMessage", () => {
  it("percent-encodes what the gRPC spec says and nothing else", async () => {
    const { grpcMessage } = await import("./errors.js");
    expect(grpcMessage("no route for /a.B/C")).toBe("no route for /a.B/C");
    expect(grpcMessage("100% sûr\n")).toBe("100%25 s%C3%BBr%0A");
  });
});

describe("gateway retries (idempotent methods, UNAVAILABLE only, bounded attempts)", () => {
  let a: Awaited<ReturnType<typeof startUpstream>>;
  let b: Awaited<ReturnType<typeof startUpstream>>;
  let gateway: Gateway;
  let url: string;
  let adminUrl: string;
  const deads: number[] = [];

  beforeAll(async () => {
    [a, b] = await Promise.all([startUpstream(), startUpstream()]);
    for (let i = 0; i < 3; i++) deads.push(await deadPort());
    const files = [...meshworkFiles];
    gateway = createGateway({
      config: {
        host: "127.0.0.1",
        port: 0,
        adminHost: "127.0.0.1",
        adminPort: 0,
        logLevel: "silent",
        upstreams: parseUpstreams(
          `users=${a.url},${b.url};notifications=${deads.map((p) => `http://127.0.0.1:${p}`).join(",")}`,
        ),
        jwksUrl: "http://127.0.0.1:1/unused",
        jwksCooldownMs: 5_000,
        jwtIssuer: "meshwork-users",
        jwtAudience: "meshwork",
        rateLimits: [],
        corsOrigins: [],
        maxRequestBytes: 64 * 1024,
        retryMaxAttempts: 2,
        defaultTimeoutMs: 2_000,
        maxTimeoutMs: 2_000,
        shutdownGraceMs: 1_000,
      },
      files,
      policies: new Map(
        files.flatMap((f) =>
          f.services.flatMap((s) =>
            s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const]),
          ),
        ),
      ),
      logger: createLogger({ service: "gateway", level: "silent" }),
      // No ejection here: every call meets the failing endpoint first.
      outlier: { consecutiveFailures: 1_000, baseEjectionMs: 1, maxEjectionMs: 1 },
    });
    ({ url, adminUrl } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await Promise.all([a?.service.shutdown(), b?.service.shutdown()]);
  });

  it("retries an idempotent call that meets UNAVAILABLE on another endpoint, and never a non-idempotent one", async () => {
    // Upstream a refuses every call (as while starting or draining): trailers-only UNAVAILABLE.
    a.service.health.setAll(ServingStatus.NOT_SERVING);
    try {
      const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
      const before = b.seen.length;
      for (let i = 0; i < 4; i++) expect((await users.getUser({ id: OK })).user?.id).toBe(OK);
      expect(b.seen.length - before).toBe(4);
      // RegisterUser has side effects: its UNAVAILABLE goes back to the client as it is.
      await expect(
        users.registerUser({ email: "a@example.com", password: "long enough", displayName: "A" }),
      ).rejects.toMatchObject({ code: Code.Unavailable });
      // Other codes are never retried: NOT_FOUND comes back once.
      const seen = b.seen.length + a.seen.length;
      await expect(users.getUser({ id: MISSING })).rejects.toMatchObject({ code: Code.NotFound });
      expect(b.seen.length + a.seen.length - seen).toBe(1);
    } finally {
      a.service.health.setAll(ServingStatus.SERVING);
    }
  });

  it("keeps no memory per call (a leak check over thousands of calls, good and bad)", async () => {
    const h2 = await import("node:http2");
    const gc = (await import("node:vm")).runInNewContext("gc") as () => void;
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const session = h2.connect(url);
    session.on("error", () => {});
    const good = frameOf(OK);
    const broken = Buffer.from([0, 0, 0, 0, 50, 1, 2, 3]);
    const one = (i: number) =>
      new Promise<void>((resolve) => {
        const req = session.request({
          ":method": "POST",
          ":path":
            i % 5 === 0 ? "/meshwork.users.v1.UserService/Nope" : "/meshwork.users.v1.UserService/GetUser",
          "content-type": "application/grpc",
        });
        req.on("error", () => resolve());
        req.on("close", () => resolve());
        req.resume();
        req.end(i % 2 === 0 ? broken : good);
      });
    const run = async (n: number) => {
      for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: 20 }, (_, j) => one(i + j)));
    };
    // (The test upstreams record every call they see; that record is cleared before each reading.)
    const forget = () => {
      a.seen.length = 0;
      b.seen.length = 0;
    };
    await run(3000);
    forget();
    const before = heap();
    await run(8000);
    forget();
    const after = heap();
    session.close();
    // A copy of one header block per call would be ~2.5 MB here.
    expect(after - before).toBeLessThan(1024 * 1024);
  });

  it("stops after the configured attempts", async () => {
    const res = await fetch(`${url}/meshwork.notifications.v1.NotificationService/ListNotifications`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ userId: OK }),
    });
    expect(res.status).toBe(503);
    const clusters = (await (await fetch(`${adminUrl}/clusters?format=json`)).json()) as {
      clusters: Array<{ name: string; endpoints: Array<{ rq_total: number }> }>;
    };
    const attempts = clusters.clusters
      .find((c) => c.name === "notifications")
      ?.endpoints.map((e) => e.rq_total);
    expect(attempts?.reduce((x, y) => x + y, 0)).toBe(2);
    expect(attempts?.filter((n) => n > 1)).toEqual([]); // a retry goes to another endpoint
  });
});

const TLS_HEADERS_TIMEOUT_MS = 1_000;

describe("gateway over TLS (ALPN h2 and http/1.1 on one port)", () => {
  const certFile = fileURLToPath(new URL("../test/tls/localhost.crt", import.meta.url));
  const keyFile = fileURLToPath(new URL("../test/tls/localhost.key", import.meta.url));
  let upstream: Awaited<ReturnType<typeof startUpstream>>;
  let gateway: Gateway;
  let port: number;

  beforeAll(async () => {
    upstream = await startUpstream();
    const config = loadConfig({
      PORT: "0",
      ADMIN_PORT: "0",
      LOG_LEVEL: "silent",
      UPSTREAMS: `users=${upstream.url}`,
      DISCOVERY: "static",
      TLS_CERT_FILE: certFile,
      TLS_KEY_FILE: keyFile,
      HEADERS_TIMEOUT_MS: String(TLS_HEADERS_TIMEOUT_MS),
    });
    gateway = createGateway({
      config,
      policies: new Map(
        UserService.methods.map((m) => [`/${UserService.typeName}/${m.name}`, { kind: "public" } as const]),
      ),
    });
    ({ port } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  it("negotiates h2 for gRPC and http/1.1 for curl-like clients, and serves both", async () => {
    const ca = readFileSync(certFile);
    const h2 = await import("node:http2");
    const session = h2.connect(`https://localhost:${port}`, { ca });
    await new Promise<void>((resolve, reject) => {
      session.once("connect", () => resolve());
      session.once("error", reject);
    });
    expect(session.alpnProtocol).toBe("h2");
    session.close();
    const users = createClient(
      UserService,
      createGrpcTransport({ baseUrl: `https://localhost:${port}`, nodeOptions: { ca } }),
    );
    expect((await users.getUser({ id: OK })).user?.id).toBe(OK);

    const https = await import("node:https");
    const { status, body, alpn } = await new Promise<{ status: number; body: string; alpn: string }>(
      (resolve, reject) => {
        const req = https.request(
          `https://localhost:${port}/meshwork.users.v1.UserService/GetUser`,
          // Offers only http/1.1 (as curl without --http2): ALPN picks it.
          {
            method: "POST",
            ca,
            agent: false,
            headers: { "content-type": "application/json" },
            ...({ ALPNProtocols: ["http/1.1"] } as object),
          },
          (res) => {
            const negotiated = String((res.socket as import("node:tls").TLSSocket | null)?.alpnProtocol);
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () =>
              resolve({
                status: res.statusCode ?? 0,
                body: Buffer.concat(chunks).toString(),
                alpn: negotiated,
              }),
            );
          },
        );
        req.on("error", reject);
        req.end(JSON.stringify({ id: OK }));
      },
    );
    expect(alpn).toBe("http/1.1");
    expect(status).toBe(200);
    expect(JSON.parse(body).user.id).toBe(OK);
  });

  it("closes a TLS connection that does not finish its handshake, or its HTTP/1.1 headers (408), or its HTTP/2 preface, within the header timeout", async () => {
    const ca = readFileSync(certFile);
    const tls = await import("node:tls");
    const started = Date.now();
    /** Resolves with what the server sent and when it closed (ms after the start). */
    const closed = (socket: net.Socket) =>
      new Promise<{ ms: number; text: string }>((resolve) => {
        let text = "";
        socket.on("data", (c: Buffer) => {
          text += c.toString("latin1");
        });
        socket.on("error", () => {});
        socket.once("close", () => resolve({ ms: Date.now() - started, text }));
      });
    const secure = (alpn: string) =>
      new Promise<import("node:tls").TLSSocket>((resolve, reject) => {
        const socket = tls.connect({ host: "localhost", port, ca, ALPNProtocols: [alpn] }, () =>
          resolve(socket),
        );
        socket.once("error", reject);
      });
    // No handshake at all: a TCP connection that sends nothing.
    const silent = closed(net.connect({ host: "127.0.0.1", port }));
    // Handshake done, HTTP/1.1 negotiated, half a header block.
    const h1 = await secure("http/1.1");
    expect(h1.alpnProtocol).toBe("http/1.1");
    const h1Closed = closed(h1);
    h1.write("POST /meshwork.users.v1.UserService/GetUser HTTP/1.1\r\nhost: localhost\r\nx-slow: ");
    // Handshake done, h2 negotiated, the preface and nothing more.
    const h2 = await secure("h2");
    expect(h2.alpnProtocol).toBe("h2");
    const h2Closed = closed(h2);
    h2.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
    const [a, b, c] = await Promise.all([silent, h1Closed, h2Closed]);
    // Closed after the timeout (1 s here), not at once, and long before Node's own 60 s.
    for (const r of [a, b, c]) {
      expect(r.ms).toBeGreaterThanOrEqual(TLS_HEADERS_TIMEOUT_MS - 100);
      expect(r.ms).toBeLessThan(TLS_HEADERS_TIMEOUT_MS + 5_000);
    }
    expect(b.text).toMatch(/^HTTP\/1\.1 408 /);
  }, 30_000);

  it("refuses half a TLS configuration", () => {
    expect(() => loadConfig({ TLS_CERT_FILE: certFile })).toThrow(/TLS_CERT_FILE and TLS_KEY_FILE/);
  });
});
