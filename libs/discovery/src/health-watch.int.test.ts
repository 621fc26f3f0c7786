import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "@meshwork/contracts/grpc/health/v1/health";
import { waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import { type HealthState, HealthWatch } from "./health-watch.js";

/** A health server that answers every Watch with SERVING and then ends the stream cleanly. */
async function startShortWatchServer() {
  let watches = 0;
  const server = http2.createServer();
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (s) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
  });
  server.on("stream", (stream) => {
    watches++;
    const msg = toBinary(
      HealthCheckResponseSchema,
      create(HealthCheckResponseSchema, { status: HealthCheckResponse_ServingStatus.SERVING }),
    );
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    frame.set(msg, 5);
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(frame);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    watches: () => watches,
    /** Stops listening and drops every connection, as a killed process would. */
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sessions) s.destroy();
      }),
  };
}

describe("HealthWatch", () => {
  const closers: Array<() => unknown> = [];
  afterAll(async () => {
    for (const c of closers.reverse()) await c();
  });

  it("keeps an endpoint's last word while it re-opens a Watch stream the server ended cleanly", async () => {
    const server = await startShortWatchServer();
    closers.push(server.close);
    const states: HealthState[] = [];
    const watch = new HealthWatch(server.url, (s) => states.push(s));
    closers.push(() => watch.close());
    await waitFor(() => server.watches() >= 5, { what: "several streams, each ended by the server" });
    // SERVING from the first answer on, never UNKNOWN in between.
    expect(states).toEqual(["SERVING"]);
    expect(watch.state).toBe("SERVING");
  });

  it("says UNKNOWN at once when the endpoint cannot be reached", async () => {
    const server = await startShortWatchServer();
    const states: HealthState[] = [];
    const watch = new HealthWatch(server.url, (s) => states.push(s));
    closers.push(() => watch.close());
    await waitFor(() => watch.state === "SERVING", { what: "SERVING" });
    await server.close();
    await waitFor(() => watch.state === "UNKNOWN", { what: "UNKNOWN once nothing answers" });
  });
});
