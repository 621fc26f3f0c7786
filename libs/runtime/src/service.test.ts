import http from "node:http";
import http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as HS } from "@meshwork/contracts/grpc/health/v1/health";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import { captureLogs, grpc, grpcJsClient, grpcJsUnary, loadGrpcJsPackage, waitFor } from "@meshwork/testing";
import { SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { heapGrowingPercent, setHeapGrowingPercent } from "./heap.js";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

const USER_ID = "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11";
const LEAKY_TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
const LEAKY_PARAM = "private-jwk-material";

/** A test double of the users handler, in memory; the runtime is what is under test here. */
function startTestService(opts: { ready: () => boolean; slowMs?: () => number }) {
  const entered = { count: 0 };
  const { lines, destination } = captureLogs();
  const exporter = new InMemorySpanExporter();
  const logger = createLogger({ service: "users", destination });
  const telemetry = createTelemetry({
    serviceName: "users",
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  const service = createService({
    name: "users",
    version: "2.3.4",
    commit: "abc1234def56",
    config: {
      host: "127.0.0.1",
      port: 0,
      logLevel: "info",
      shutdownGraceMs: 5_000,
      healthCheckIntervalMs: 100,
      readMaxBytes: 1024 * 1024,
      tracesExporter: "none",
      otlpEndpoint: undefined,
      sampleRatio: 1,
    },
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    logger,
    telemetry,
    readiness: [
      {
        name: "test",
        async check() {
          if (!opts.ready()) throw new Error("not yet");
        },
      },
    ],
    routes(router) {
      router.service(UserService, {
        async getUser(req, ctx) {
          entered.count++;
          const wait = opts.slowMs?.() ?? 0;
          if (wait > 0) {
            await new Promise((resolve, reject) => {
              const t = setTimeout(resolve, wait);
              ctx.signal.addEventListener("abort", () => {
                clearTimeout(t);
                reject(ctx.signal.reason);
              });
            });
          }
          if (req.id !== USER_ID) throw new ConnectError(`user ${req.id} not found`, Code.NotFound);
          return {
            user: create(UserSchema, { id: USER_ID, email: "a@example.com", createTime: timestampNow() }),
          };
        },
        async registerUser() {
          throw new Error(
            'duplicate key value violates unique constraint "users_email_key" SELECT * FROM users',
          );
        },
        async login() {
          throw new ConnectError("invalid credentials", Code.Unauthenticated);
        },
        async rotateSigningKey() {
          // A deliberate server fault whose text quotes a failed statement and a token.
          throw new ConnectError(
            `signing key store failed for ${LEAKY_TOKEN}: Failed query: update keys set k = $1\nparams: ${LEAKY_PARAM}`,
            Code.Internal,
          );
        },
        async listUsers() {
          // Ignores ctx.signal on purpose: the runtime must enforce the deadline anyway.
          const wait = opts.slowMs?.() ?? 0;
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          return { users: [], nextPageToken: "" };
        },
      });
    },
  });
  return { service, lines, exporter, entered };
}

describe("service runtime over real sockets", () => {
  let ready = false;
  let slow = 0;
  let t: ReturnType<typeof startTestService>;
  let service: Service;
  let url: string;
  let port: number;
  let started: Promise<{ port: number; url: string }>;

  beforeAll(async () => {
    t = startTestService({ ready: () => ready, slowMs: () => slow });
    service = t.service;
    started = service.start();
    const line = await waitFor(() => t.lines.find((l) => l.msg === "listening"));
    // Started with no heapGrowingPercent: V8's setting is left alone.
    expect(line.heapGrowingPercent).toBeUndefined();
    port = line.port as number;
    url = `http://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    await service.shutdown();
  });

  it("reports NOT_SERVING and refuses calls until readiness checks pass, then SERVING", async () => {
    const health = createClient(Health, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    expect((await health.check({ service: "" })).status).toBe(HS.NOT_SERVING);
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(503);
    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "1.1" }));
    await expect(users.getUser({ id: USER_ID })).rejects.toMatchObject({ code: Code.Unavailable });

    const watched: HS[] = [];
    const abort = new AbortController();
    const watching = (async () => {
      for await (const r of health.watch(
        { service: "meshwork.users.v1.UserService" },
        { signal: abort.signal },
      )) {
        watched.push(r.status);
        if (r.status === HS.SERVING) return;
      }
    })();
    // Flip readiness only once the watch has reported the current status, or the first
    // message may already be SERVING.
    await waitFor(() => watched.length > 0, { what: "the first health watch message" });
    ready = true;
    await started;
    await watching;
    abort.abort();
    expect(watched).toEqual([HS.NOT_SERVING, HS.SERVING]);
    expect((await health.check({ service: "" })).status).toBe(HS.SERVING);
    await expect(health.check({ service: "nope.Service" })).rejects.toMatchObject({ code: Code.NotFound });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it("serves Connect JSON over HTTP/1.1 with plain fetch", async () => {
    await started;
    const res = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: USER_ID }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { user: { id: string; email: string } };
    expect(body.user).toMatchObject({ id: USER_ID, email: "a@example.com" });

    const bad = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ id: "not-a-uuid" }),
    });
    expect(bad.status).toBe(400);
    const err = (await bad.json()) as { code: string; message: string };
    expect(err.code).toBe("invalid_argument");
    expect(err.message).toContain("id");

    const malformed = await fetch(`${url}/meshwork.users.v1.UserService/GetUser`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{not json",
    });
    expect(malformed.status).toBe(400);
    expect(((await malformed.json()) as { code: string }).code).toBe("invalid_argument");
  });

  it("serves the Connect protocol (binary and JSON) over HTTP/2 and gRPC-Web over HTTP/1.1", async () => {
    await started;
    for (const transport of [
      createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: true }),
      createConnectTransport({ baseUrl: url, httpVersion: "2", useBinaryFormat: false }),
      createGrpcWebTransport({ baseUrl: url, httpVersion: "1.1" }),
    ]) {
      const users = createClient(UserService, transport);
      expect((await users.getUser({ id: USER_ID })).user?.email).toBe("a@example.com");
      await expect(users.getUser({ id: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12" })).rejects.toMatchObject({
        code: Code.NotFound,
      });
    }
  });

  it("answers an independent gRPC client (grpc-js over h2c) with exact status codes", async () => {
    await started;
    const pkg = loadGrpcJsPackage("meshwork/users/v1/users.proto");
    const client = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
    try {
      const ok = await grpcJsUnary<{ user: { id: string } }>(client, "GetUser", { id: USER_ID });
      expect(ok.user.id).toBe(USER_ID);
      await expect(grpcJsUnary(client, "GetUser", { id: "nope" })).rejects.toMatchObject({
        code: grpc.status.INVALID_ARGUMENT,
        details: expect.stringContaining("id"),
      });
      await expect(
        grpcJsUnary(client, "GetUser", { id: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a12" }),
      ).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
      await expect(grpcJsUnary(client, "Login", { email: "a@b.c", password: "x" })).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
      });
    } finally {
      client.close();
    }
  });

  it("hides unexpected errors as INTERNAL without leaking their message, and logs them", async () => {
    await started;
    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    const err = await users
      .registerUser({ email: "a@example.com", password: "long enough", displayName: "A" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.Internal);
    expect((err as ConnectError).rawMessage).toBe("internal error");
    expect(JSON.stringify(err)).not.toContain("SELECT");
    await waitFor(() => t.lines.find((l) => l.msg === "unhandled error"));
  });

  it("scrubs a server fault's message before it becomes the span's status (statement parameters, tokens)", async () => {
    await started;
    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    const err = await users.rotateSigningKey({}).catch((e: unknown) => ConnectError.from(e));
    expect((err as ConnectError).code).toBe(Code.Internal);
    const span = await waitFor(() =>
      t.exporter.getFinishedSpans().find((s) => s.name.endsWith("/RotateSigningKey")),
    );
    expect(span.status.code).toBe(SpanStatusCode.ERROR);
    expect(span.status.message).toContain("signing key store failed for [redacted]");
    expect(span.status.message).toContain("params: [redacted]");
    expect(JSON.stringify(span.status)).not.toContain(LEAKY_TOKEN);
    expect(JSON.stringify(span.status)).not.toContain(LEAKY_PARAM);
  });

  it("ends a call at the client's deadline with DEADLINE_EXCEEDED", async () => {
    await started;
    slow = 2_000;
    try {
      const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
      const began = Date.now();
      await expect(users.getUser({ id: USER_ID }, { timeoutMs: 150 })).rejects.toMatchObject({
        code: Code.DeadlineExceeded,
      });
      expect(Date.now() - began).toBeLessThan(1_500);
      const pkg = loadGrpcJsPackage("meshwork/users/v1/users.proto");
      const client = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
      await expect(
        grpcJsUnary(client, "GetUser", { id: USER_ID }, { deadlineMs: 150 }),
      ).rejects.toMatchObject({
        code: grpc.status.DEADLINE_EXCEEDED,
      });
      client.close();
      // gRPC (the fast path) to a handler that ignores its signal: answered at the deadline too.
      const ignoring = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
      await expect(grpcJsUnary(ignoring, "ListUsers", {}, { deadlineMs: 150 })).rejects.toMatchObject({
        code: grpc.status.DEADLINE_EXCEEDED,
      });
      ignoring.close();
      // A client that does not enforce deadlines itself (curl, fetch) still gets the answer in
      // time, even from a handler that ignores its abort signal.
      const t0 = Date.now();
      const res = await fetch(`${url}/meshwork.users.v1.UserService/ListUsers`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-timeout-ms": "150" },
        body: "{}",
      });
      expect(((await res.json()) as { code: string }).code).toBe("deadline_exceeded");
      expect(Date.now() - t0).toBeLessThan(1_500);
      // Each call is recorded as it ended for its client: DEADLINE_EXCEEDED at the deadline, not
      // OK once the handler that ignores the deadline finishes.
      for (const protocol of ["grpc", "connect"]) {
        const line = await waitFor(() =>
          t.lines.find(
            (l) =>
              l.msg === "rpc" &&
              l.method === "/meshwork.users.v1.UserService/ListUsers" &&
              l.protocol === protocol,
          ),
        );
        expect(line.code).toBe("deadline_exceeded");
        expect(line.duration_ms as number).toBeLessThan(1_000);
      }
    } finally {
      slow = 0;
    }
  });

  it("records a gRPC client's reset at its deadline as DEADLINE_EXCEEDED, an earlier one as CANCELLED", async () => {
    await started;
    slow = 5_000;
    const session = http2.connect(url);
    try {
      const frame = Buffer.alloc(5 + 38);
      frame.writeUInt32BE(38, 1);
      frame[5] = 0x0a; // field 1 (id), length-delimited
      frame[6] = 36;
      frame.write(USER_ID, 7, "ascii");
      const calls = () =>
        t.lines.filter(
          (l) =>
            l.msg === "rpc" && l.method === "/meshwork.users.v1.UserService/GetUser" && l.protocol === "grpc",
        );
      // Sends a call with this timeout, resets it (CANCEL, as grpc-js does at its deadline) when
      // `resetAfterMs` have passed since it was sent, and returns the code the server recorded.
      const resetCall = async (timeoutMs: number, resetAfterMs: number) => {
        const before = calls().length;
        const entered = t.entered.count;
        const sent = Date.now();
        const stream = session.request({
          ":method": "POST",
          ":path": "/meshwork.users.v1.UserService/GetUser",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": `${timeoutMs}m`,
        });
        stream.on("error", () => {});
        stream.end(frame);
        await waitFor(() => t.entered.count > entered || undefined);
        const left = resetAfterMs - (Date.now() - sent);
        if (left > 0) await new Promise((resolve) => setTimeout(resolve, left));
        stream.close(http2.constants.NGHTTP2_CANCEL);
        const line = await waitFor(() => calls()[before]);
        return line.code;
      };
      // Reset long before the deadline: the client cancelled.
      expect(await resetCall(2_000, 0)).toBe("canceled");
      // Reset 15 ms before this side's timer for the deadline: the client's clock started first,
      // so this is the client's deadline passing, recorded as such (it was "canceled" before).
      expect(await resetCall(300, 285)).toBe("deadline_exceeded");
    } finally {
      session.close();
      slow = 0;
    }
  });

  it("continues the caller's trace, logs one line per call with trace ids, and exports RED metrics", async () => {
    await started;
    const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    await users.getUser({ id: USER_ID }, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    const span = await waitFor(() =>
      t.exporter.getFinishedSpans().find((s) => s.spanContext().traceId === traceId),
    );
    expect(span.name).toBe("meshwork.users.v1.UserService/GetUser");
    expect(span.parentSpanContext?.spanId).toBe("00f067aa0ba902b7");
    expect(span.attributes["rpc.service"]).toBe("meshwork.users.v1.UserService");
    expect(span.attributes["rpc.method"]).toBe("GetUser");
    const line = await waitFor(() => t.lines.find((l) => l.msg === "rpc" && l.trace_id === traceId));
    expect(line).toMatchObject({
      service: "users",
      level: "info",
      method: "/meshwork.users.v1.UserService/GetUser",
      code: "ok",
      span_id: span.spanContext().spanId,
    });
    expect(typeof line.duration_ms).toBe("number");

    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(
      /rpc_server_requests_total\{[^}]*rpc_method="GetUser"[^}]*rpc_code="not_found"[^}]*\} \d+/,
    );
    expect(metrics).toMatch(/rpc_server_duration(_seconds)?_bucket\{/);
    // What it runs: its package's version and the commit it was built from.
    expect(metrics).toMatch(/# TYPE meshwork_build_info gauge/);
    expect(metrics).toMatch(
      /meshwork_build_info\{[^}]*service_name="users"[^}]*version="2\.3\.4"[^}]*commit="abc1234def56"[^}]*\} 1\n/,
    );
  });

  it("drains on shutdown: the in-flight call completes, new calls are refused", async () => {
    await started;
    slow = 600;
    const users = createClient(UserService, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    const pkg = loadGrpcJsPackage("meshwork/users/v1/users.proto");
    const grpcClient = grpcJsClient(pkg, "meshwork.users.v1.UserService", `127.0.0.1:${port}`);
    await grpcJsUnary(grpcClient, "ListUsers", {}); // an open HTTP/2 connection
    const before = t.entered.count;
    const inFlight = users.getUser({ id: USER_ID });
    await waitFor(() => t.entered.count > before, { what: "the call to reach the handler" });
    const stopping = service.shutdown();
    // A call on an HTTP/2 connection that is draining (GOAWAY), and one on a new connection.
    await expect(grpcJsUnary(grpcClient, "ListUsers", {})).rejects.toMatchObject({
      code: grpc.status.UNAVAILABLE,
    });
    grpcClient.close();
    const fresh = createClient(
      UserService,
      createConnectTransport({ baseUrl: url, httpVersion: "1.1", nodeOptions: { agent: new http.Agent() } }),
    );
    await expect(fresh.getUser({ id: USER_ID })).rejects.toMatchObject({ code: Code.Unavailable });
    expect((await inFlight).user?.id).toBe(USER_ID);
    await stopping;
    expect(t.lines.some((l) => l.msg === "stopped")).toBe(true);
  });
});

describe("GC_HEAP_GROWING_PERCENT", () => {
  it("is set for the process when a service that configures it starts, and logged", async () => {
    const { lines, destination } = captureLogs();
    const service = createService({
      name: "heap-test",
      config: testRuntimeConfig({ heapGrowingPercent: 35, logLevel: "info" }),
      logger: createLogger({ service: "heap-test", destination }),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      routes() {},
    });
    try {
      await service.start();
      expect(heapGrowingPercent()).toBe(35);
      expect((await waitFor(() => lines.find((l) => l.msg === "listening"))).heapGrowingPercent).toBe(35);
    } finally {
      await service.shutdown();
      setHeapGrowingPercent(0);
    }
  });
});
