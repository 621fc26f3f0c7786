import { createServer } from "node:net";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { ConsoleService } from "@meshwork/contracts/meshwork/console/v1/console";
import { connectNats, streamName } from "@meshwork/events";
import { uniqueName, waitFor } from "@meshwork/testing";
import { type Receiver, type StoredSpan, startReceiver } from "@meshwork/tracestore";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningConsole, startConsole } from "./server.js";

const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
function span(
  id: string,
  service: string,
  startMs: number,
  durMs: number,
  over: Partial<StoredSpan> = {},
): StoredSpan {
  const start = BigInt(1_700_000_000_000 + startMs) * 1_000_000n;
  return {
    traceId: TRACE,
    spanId: id,
    name: `${service} work`,
    kind: "server",
    service,
    startTimeUnixNano: String(start),
    endTimeUnixNano: String(start + BigInt(durMs) * 1_000_000n),
    durationMs: durMs,
    status: { code: "unset" },
    attributes: { "rpc.method": "PlaceOrder" },
    resource: { "service.name": service },
    scope: { name: "test" },
    events: [],
    links: [],
    ...over,
  };
}

describe("the console server", () => {
  const namespace = `${uniqueName("t")}.`;
  let receiver: Receiver;
  let running: RunningConsole;
  let nc: NatsConnection;
  let client: ReturnType<typeof createClient<typeof ConsoleService>>;

  beforeAll(async () => {
    receiver = await startReceiver({ host: "127.0.0.1", port: 0 });
    nc = await connectNats(natsUrl, "console-test");
    running = await startConsole({
      port: 0,
      // The gateway is down: the explorer says so, the rest keeps working.
      gatewayUrl: `http://127.0.0.1:${await closedPort()}`,
      receiverUrl: receiver.url,
      natsUrl,
      registryBucket: `${namespace.slice(0, -1)}_registry`,
      namespace,
      processes: {
        list: () => [{ name: "payments", state: "stopped", restarts: 0, address: "127.0.0.1:1" }],
        stop: () => {},
        restart: () => {},
      },
    });
    client = createClient(
      ConsoleService,
      createConnectTransport({ baseUrl: running.url, httpVersion: "1.1" }),
    );
  });

  afterAll(async () => {
    await running?.close();
    await receiver?.close();
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(streamName(namespace, "DLQ_NOTIFICATIONS")).catch(() => {});
    await jsm.streams.delete(streamName(namespace, "USERS")).catch(() => {});
    const { Kvm } = await import("@nats-io/kv");
    await new Kvm(nc)
      .open(`${namespace.slice(0, -1)}_registry`)
      .then((kv) => kv.destroy())
      .catch(() => {});
    await nc.close();
  });

  it("serves the page on loopback, with any unknown path answered by index.html", async () => {
    expect(running.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const res = await fetch(new URL("traces/abc", running.url));
    expect([200, 503]).toContain(res.status); // 503 (and a sentence) when the page was not built
    if (res.status === 200) expect(await res.text()).toContain('<div id="app">');
    const post = await fetch(new URL("index.html", running.url), { method: "POST" });
    expect(post.status).toBe(405);
  });

  it("lists traces with filters and draws one trace in waterfall order with its log lines", async () => {
    receiver.traces.add([
      span("00000000000000a1", "gateway", 0, 100, { name: "meshwork.orders.v1.OrderService/PlaceOrder" }),
      span("00000000000000b2", "orders", 10, 80, { parentSpanId: "00000000000000a1", kind: "server" }),
      span("00000000000000c3", "payments", 40, 30, {
        parentSpanId: "00000000000000b2",
        status: { code: "error", message: "provider down" },
        events: [
          {
            name: "exception",
            timeUnixNano: String(BigInt(1_700_000_000_050) * 1_000_000n),
            attributes: { "exception.message": "down" },
          },
        ],
      }),
    ]);
    receiver.logs.addRaw(
      "orders",
      JSON.stringify({
        level: 30,
        time: 1_700_000_000_020,
        service: "orders",
        msg: "placing",
        trace_id: TRACE,
        span_id: "00000000000000b2",
      }),
    );
    const all = await client.listTraces({});
    expect(all.traces.map((t) => t.traceId)).toEqual([TRACE]);
    expect(all.traces[0]).toMatchObject({
      services: ["gateway", "orders", "payments"],
      spanCount: 3,
      errorCount: 1,
    });
    expect((await client.listTraces({ method: "placeorder" })).traces).toHaveLength(1);
    expect((await client.listTraces({ method: "GetOrder" })).traces).toHaveLength(0);
    expect((await client.listTraces({ status: "error" })).traces).toHaveLength(1);
    expect((await client.listTraces({ minDurationMs: 101 })).traces).toHaveLength(0);
    expect((await client.listTraces({ service: "inventory" })).traces).toHaveLength(0);

    const trace = await client.getTrace({ traceId: TRACE.toUpperCase() });
    expect(trace.spans.map((s) => [s.service, s.depth, Math.round(s.offsetMs)])).toEqual([
      ["gateway", 0, 0],
      ["orders", 1, 10],
      ["payments", 2, 40],
    ]);
    expect(trace.spans[2]).toMatchObject({ status: "error", statusMessage: "provider down" });
    expect(trace.spans[2]?.events[0]).toMatchObject({ name: "exception", offsetMs: 50 });
    expect(JSON.parse(trace.spans[0]?.attributesJson ?? "")).toEqual({ "rpc.method": "PlaceOrder" });
    expect(trace.logs).toMatchObject([
      { service: "orders", msg: "placing", spanId: "00000000000000b2", offsetMs: 20 },
    ]);

    // The flow map from the same trace: gateway -> orders -> payments.
    const map = await client.getFlowMap({});
    expect(map.edges.map((e) => [e.from, e.to, e.kind, Number(e.calls), Number(e.errors)])).toEqual([
      ["service:gateway", "service:orders", "rpc", 1, 0],
      ["service:orders", "service:payments", "rpc", 1, 1],
    ]);

    await expect(client.getTrace({ traceId: "nope" })).rejects.toMatchObject({ code: Code.InvalidArgument });
    await expect(client.getTrace({ traceId: "f".repeat(32) })).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("keeps answering while parts of the mesh are down, and says which", async () => {
    // The receiver gone: the flow map says so rather than failing.
    const gone = await startConsole({
      port: 0,
      gatewayUrl: "http://127.0.0.1:9",
      receiverUrl: `http://127.0.0.1:${await closedPort()}`,
      natsUrl,
      registryBucket: `${namespace.slice(0, -1)}_registry`,
      namespace,
    });
    try {
      const c = createClient(
        ConsoleService,
        createConnectTransport({ baseUrl: gone.url, httpVersion: "1.1" }),
      );
      expect((await c.getFlowMap({})).problem).toMatch(
        /the trace receiver at http:\/\/127\.0\.0\.1:\d+ does not answer/,
      );
      expect((await c.listTraces({})).problem).toMatch(/does not answer/);
    } finally {
      await gone.close();
    }
    const api = await client.describeApi({});
    expect(api.services).toEqual([]);
    expect(api.problem).toMatch(/server reflection through the gateway at http:\/\/127\.0\.0\.1:\d+ failed/);
    const call = await client
      .invoke({ service: "meshwork.users.v1.UserService", method: "Login", requestJson: "{}" })
      .catch((e: unknown) => ConnectError.from(e));
    expect(call).toMatchObject({ code: Code.Unavailable });
    // Sagas: an operator's token is needed before anything is sent; the gateway down is named.
    await expect(client.listSagas({})).rejects.toMatchObject({
      code: Code.Unauthenticated,
      rawMessage: expect.stringContaining("admin role"),
    });
    await expect(
      client.getSaga({ token: "an-admin-token", id: "01a24b27-d03a-76f6-a631-b784be8d1136" }),
    ).rejects.toMatchObject({
      code: Code.Unavailable,
      rawMessage: expect.stringMatching(
        /^orders' GetSaga through the gateway at http:\/\/127\.0\.0\.1:\d+: /,
      ),
    });
    const instances = await client.listInstances({});
    expect(instances.instances).toMatchObject([
      { service: "payments", health: "DOWN", processState: "stopped", controllable: true },
    ]);
    expect(instances.problems).toContain("payments at 127.0.0.1:1 is down");
    await expect(client.controlProcess({ service: "nope", action: 1 })).rejects.toMatchObject({
      code: Code.NotFound,
    });
    await expect(client.controlProcess({ service: "payments", action: 0 })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
  });

  it("lists dead letters and replays one onto its original subject (the code of meshctl events dlq)", async () => {
    const jsm = await jetstreamManager(nc);
    const dlq = streamName(namespace, "DLQ_NOTIFICATIONS");
    const original = `${namespace}meshwork.users.v1.UserRegistered`;
    await jsm.streams.add({ name: dlq, subjects: [`${namespace}dlq.notifications`] });
    await jsm.streams.add({ name: streamName(namespace, "USERS"), subjects: [original] });
    const h = headers();
    h.set("ce-id", "evt-1");
    h.set("ce-type", "meshwork.users.v1.UserRegistered");
    h.set("dlq-original-subject", original);
    h.set("dlq-consumer", "notifications");
    h.set("dlq-deliveries", "5");
    h.set("dlq-error", "not a valid meshwork.users.v1.UserRegistered");
    h.set("dlq-time", new Date().toISOString());
    await jetstream(nc).publish(`${namespace}dlq.notifications`, new Uint8Array([1, 2]), { headers: h });

    const res = await client.getResilience({});
    expect(res.deadLetters).toMatchObject([
      {
        stream: dlq,
        seq: 1n,
        consumer: "notifications",
        eventId: "evt-1",
        deliveries: 5,
        originalSubject: original,
      },
    ]);
    await expect(client.replayDeadLetter({ stream: dlq, seq: 9n })).rejects.toMatchObject({
      code: Code.NotFound,
    });
    await expect(client.replayDeadLetter({ stream: "ORDERS", seq: 1n })).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    expect((await client.replayDeadLetter({ stream: dlq, seq: 1n })).originalSubject).toBe(original);
    await waitFor(async () => (await jsm.streams.info(streamName(namespace, "USERS"))).state.messages === 1);
    const replayed = await jsm.streams.getMessage(streamName(namespace, "USERS"), { seq: 1 });
    expect(replayed?.header.get("ce-id")).toBe("evt-1");
    expect(replayed?.header.get("dlq-error")).toBe("");
    expect((await client.getResilience({})).deadLetters).toEqual([]);
  });
});
