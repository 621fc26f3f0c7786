import { createLogger } from "@meshwork/telemetry";
import { captureLogs } from "@meshwork/testing";
import { describe, expect, it } from "vitest";
import { type AccessEntry, AccessLog } from "./access-log.js";

const entry: AccessEntry = {
  method: "/meshwork.users.v1.UserService/GetUser",
  protocol: "grpc",
  status: "OK",
  upstream: "http://127.0.0.1:50051",
  duration_ms: 1.234,
  bytes_in: 17,
  bytes_out: 120,
  request_id: "req-1",
  trace_id: "0af7651916cd43dd8448eb211c80319c",
  span_id: "b7ad6b7169203331",
};

function logOf(level = "info") {
  const log = captureLogs();
  const logger = createLogger({ service: "gateway", level, destination: log.destination });
  return { log, logger, access: new AccessLog(logger) };
}

describe("the access log", () => {
  it("writes a call's fields as one JSON line at info, with the service, time and msg", () => {
    const { log, access } = logOf();
    expect(access.enabled).toBe(true);
    access.write(entry);
    expect(log.lines).toEqual([
      { level: "info", time: expect.any(String), service: "gateway", ...entry, msg: "access" },
    ]);
  });

  it("leaves out an upstream it has not got, and is off below info", () => {
    const { log, logger, access } = logOf("warn");
    expect(access.enabled).toBe(false);
    logger.level = "info";
    expect(access.enabled).toBe(true);
    access.write({ ...entry, upstream: undefined, status: "Unauthenticated" });
    expect(log.lines[0]).not.toHaveProperty("upstream");
    expect(log.lines[0]).toMatchObject({ status: "Unauthenticated" });
  });

  it("logs a path without its query (a Connect GET carries its request there), and the query's length", () => {
    const { log, access } = logOf();
    const queries = [
      "message=eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl&encoding=json",
      "message=%7B%22password%22%3A%22hunter2%22%7D&encoding=json",
      "base64=1&message=eyJwYXNzd29yZCI6Imh1bnRlcjIifQ",
      "access_token=opaque-abc123",
    ];
    for (const query of queries)
      access.write({ ...entry, method: `/meshwork.users.v1.UserService/Login?${query}` });
    expect(log.lines.map((l) => [l.method, l.query_bytes])).toEqual(
      queries.map((q) => ["/meshwork.users.v1.UserService/Login", q.length]),
    );
    const text = JSON.stringify(log.lines);
    for (const secret of ["hunter2", "eyJ", "opaque-abc123", "aHVudGVy"]) expect(text).not.toContain(secret);
    access.write(entry);
    expect(log.lines.at(-1)).not.toHaveProperty("query_bytes");
  });

  it("writes a number JSON cannot hold as null rather than break the line", () => {
    const { log, access } = logOf();
    access.write({ ...entry, duration_ms: Number.NaN, bytes_out: Number.POSITIVE_INFINITY });
    expect(log.lines[0]).toMatchObject({ duration_ms: null, bytes_out: null, bytes_in: 17 });
  });

  it("without the call's span (a preflight) and none active, writes no trace ids", () => {
    const { log, access } = logOf();
    const { trace_id: _t, span_id: _s, ...withoutIds } = entry;
    access.write(withoutIds);
    expect(log.lines[0]).not.toHaveProperty("trace_id");
    expect(log.lines[0]).not.toHaveProperty("span_id");
  });
});
