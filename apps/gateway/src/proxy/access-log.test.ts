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

  it("scrubs a token out of a path's query (a Connect GET carries its request there)", () => {
    const { log, access } = logOf();
    const jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    access.write({ ...entry, method: `/meshwork.users.v1.UserService/GetUser?message=${jwt}&encoding=json` });
    expect(log.lines[0]?.method).toBe(
      "/meshwork.users.v1.UserService/GetUser?message=[redacted]&encoding=json",
    );
  });

  it("without the call's span (a preflight) and none active, writes no trace ids", () => {
    const { log, access } = logOf();
    const { trace_id: _t, span_id: _s, ...withoutIds } = entry;
    access.write(withoutIds);
    expect(log.lines[0]).not.toHaveProperty("trace_id");
    expect(log.lines[0]).not.toHaveProperty("span_id");
  });
});
