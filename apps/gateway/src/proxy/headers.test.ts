import type http2 from "node:http2";
import { describe, expect, it } from "vitest";
import {
  answerHeaders,
  answerTrailers,
  attemptHeaders,
  isGrpcAnswer,
  requestIdOf,
  upstreamHeaders,
  withCors,
} from "./headers.js";

describe("headers upstream", () => {
  const client = {
    ":method": "POST",
    ":path": "/a.B/C",
    ":authority": "edge.example:8080",
    ":scheme": "https",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: "Bearer t",
    connection: "keep-alive",
    "keep-alive": "5",
    "transfer-encoding": "chunked",
    upgrade: "h2c",
    host: "edge.example",
    "x-meshwork-subject": "spoofed",
    "x-meshwork-roles": "admin",
    "x-meshwork-email": "spoofed@example.com",
    "x-meshwork-identity": "spoofed.assertion.sig",
    "grpc-timeout": "5S",
    "connect-timeout-ms": "5000",
    "x-custom": "kept",
  };

  it("keeps the client's headers less hop-by-hop, pseudo, identity and deadline ones", () => {
    const out = upstreamHeaders(client, {
      method: "POST",
      path: "/a.B/C",
      requestId: "r-1",
      assertion: undefined,
    });
    expect(out).toEqual({
      ":method": "POST",
      ":path": "/a.B/C",
      ":scheme": "http",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: "Bearer t",
      "x-custom": "kept",
      "x-request-id": "r-1",
      "x-forwarded-host": "edge.example:8080",
    });
  });

  it("says who the caller is in the gateway's own assertion only, never in plain headers", () => {
    const out = upstreamHeaders(client, {
      method: "POST",
      path: "/a.B/C",
      requestId: "r-1",
      assertion: "a.b.c",
    });
    expect(out["x-meshwork-identity"]).toBe("a.b.c");
    expect(out["x-meshwork-subject"]).toBeUndefined();
    expect(out["x-meshwork-roles"]).toBeUndefined();
    expect(out["x-meshwork-email"]).toBeUndefined();
  });

  it("names the host from :authority, else host (HTTP/1.1), else nothing", () => {
    const call = { method: "GET", path: "/", requestId: "r", assertion: undefined };
    expect(upstreamHeaders({ host: "h1.example" }, call)["x-forwarded-host"]).toBe("h1.example");
    expect(upstreamHeaders({}, call)["x-forwarded-host"]).toBe("");
  });

  it("sends what is left of the deadline in the client's protocol, at least 1 ms, per attempt", () => {
    const base = { ":path": "/a.B/C", "x-request-id": "r" };
    expect(attemptHeaders(base, "10.0.0.1:50051", "grpc", 1234.4)).toEqual({
      ":path": "/a.B/C",
      "x-request-id": "r",
      ":authority": "10.0.0.1:50051",
      "grpc-timeout": "1234m",
    });
    expect(attemptHeaders(base, "u:1", "grpc-web", 10)["grpc-timeout"]).toBe("10m");
    expect(attemptHeaders(base, "u:1", "connect", 99.6)["connect-timeout-ms"]).toBe("100");
    const stream = attemptHeaders(base, "u:1", "connect-stream", -50);
    expect(stream["connect-timeout-ms"]).toBe("1");
    expect(stream["grpc-timeout"]).toBeUndefined();
    expect(base).toEqual({ ":path": "/a.B/C", "x-request-id": "r" }); // the call's own stay as they were
  });
});

describe("headers downstream", () => {
  it("passes an answer's headers on with :status, without hop-by-hop ones, with the request id", () => {
    // As Node gives them: `:status` a number.
    const upstream = {
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-accept-encoding": "gzip",
      connection: "close",
      "x-request-id": "from-upstream",
    } as unknown as http2.IncomingHttpHeaders;
    const out = answerHeaders(upstream, "r-1");
    expect(out).toEqual({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-accept-encoding": "gzip",
      "x-request-id": "r-1",
    });
  });

  it("passes trailers on without pseudo-headers", () => {
    const trailers = { "grpc-status": "0", "grpc-message": "", ":path": "/x" };
    expect(answerTrailers(trailers)).toEqual({
      "grpc-status": "0",
      "grpc-message": "",
    });
    expect(answerTrailers(undefined)).toEqual({});
  });

  it("tells a gRPC answer (which must end with trailers) from gRPC-Web and the rest", () => {
    expect(isGrpcAnswer({ "content-type": "application/grpc" })).toBe(true);
    expect(isGrpcAnswer({ "content-type": "application/grpc+proto" })).toBe(true);
    expect(isGrpcAnswer({ "content-type": "application/grpc-web+proto" })).toBe(false);
    expect(isGrpcAnswer({ "content-type": "application/json" })).toBe(false);
    expect(isGrpcAnswer({})).toBe(false);
  });

  it("adds what a browser at an allowed origin needs to read the status", () => {
    const h = withCors({ "content-type": "application/json" }, "https://app.example");
    expect(h["access-control-allow-origin"]).toBe("https://app.example");
    expect(h.vary).toBe("Origin");
    const exposed = String(h["access-control-expose-headers"]).toLowerCase().split(", ");
    for (const name of ["grpc-status", "grpc-message", "x-request-id", "retry-after", "x-ratelimit-limit"])
      expect(exposed).toContain(name);
  });
});

describe("request ids", () => {
  it("keeps a client's sane request id and makes one otherwise", () => {
    expect(requestIdOf({ "x-request-id": "abc-123_X.y:z" })).toBe("abc-123_X.y:z");
    for (const bad of ["", "a b", "a/b", "x".repeat(129), "é"]) {
      const id = requestIdOf({ "x-request-id": bad });
      expect(id).not.toBe(bad);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(requestIdOf({})).toMatch(/^[0-9a-f-]{36}$/);
    expect(requestIdOf({})).not.toBe(requestIdOf({}));
  });
});
