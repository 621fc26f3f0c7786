import { uniqueName, waitFor } from "@meshwork/testing";
import { JetStreamApiError, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { EventConsumer } from "./consumer.js";
import { consumeForeignStream } from "./foreign-stream.js";
import { meshStreams } from "./streams.js";
import { deleteNamespaceStreams } from "./testing/index.js";

// Issue 19 (h19c): no service declares another's stream. A consumer of a foreign stream waits for
// its owner to create it, never creates it itself, and once it exists leaves its config alone.
const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const ns = `${uniqueName("fs")}.`;
let nc: NatsConnection;

const quiet = () => {
  const warnings: string[] = [];
  const log = () => {};
  const logger = {
    warn: (_o: unknown, msg?: string) => warnings.push(String(msg)),
    info: log,
    debug: log,
    error: log,
    trace: log,
    fatal: log,
    child: () => logger,
  };
  return { logger: logger as never, warnings };
};

async function exists(name: string): Promise<boolean> {
  try {
    await (await jetstreamManager(nc)).streams.info(name);
    return true;
  } catch (err) {
    if (err instanceof JetStreamApiError && err.status === 404) return false;
    throw err;
  }
}

beforeAll(async () => {
  nc = await connect({ servers: natsUrl, name: "foreign-stream-test" });
});

afterAll(async () => {
  await nc.close();
  await deleteNamespaceStreams(ns, natsUrl);
});

describe("consumeForeignStream", () => {
  it("waits for a missing stream without ever creating it, then starts on the owner's stream as the owner made it", async () => {
    const legacy = meshStreams.legacy(ns);
    const deadLetters = meshStreams.deadLetters(ns, "inventory");
    const filterSubject = `${ns}meshwork.legacy.v1.ProductChanged`;
    const { logger, warnings } = quiet();
    let built = 0;
    const consumer = consumeForeignStream({
      nc,
      stream: legacy,
      durable: "inventory-legacy-sync",
      deadLetters,
      logger,
      filterSubject,
      retryMs: 20,
      consumer: (): EventConsumer => {
        built++;
        return { start: async () => {}, stop: async () => {} };
      },
    });
    await consumer.start(); // does not wait for the stream
    expect(warnings).toContain(
      "stream not found: its owning service creates it; this sync starts once it exists",
    );
    // Many looks later (20 ms apart), the stream is still not there: it is never declared here.
    const jsm = await jetstreamManager(nc);
    const since = Date.now();
    await waitFor(async () => Date.now() - since > 300 && !(await exists(legacy.name)), {
      what: "retries that leave the stream missing",
      timeoutMs: 10_000,
    });
    expect(await exists(legacy.name)).toBe(false);
    expect(built).toBe(0);
    // The owner creates it with its own config: the consumer starts, and the config is untouched.
    const maxAgeNs = 3_600 * 1e9;
    await jsm.streams.add({ name: legacy.name, subjects: legacy.subjects, max_age: maxAgeNs });
    await waitFor(() => built === 1, {
      what: "the consumer started once the stream exists",
      timeoutMs: 15_000,
    });
    const info = await jsm.streams.info(legacy.name);
    expect(info.config.max_age).toBe(maxAgeNs);
    expect(info.config.subjects).toEqual(legacy.subjects);
    const durable = await jsm.consumers.info(legacy.name, "inventory-legacy-sync");
    expect(durable.config.filter_subject).toBe(filterSubject);
    expect(await exists(deadLetters.name)).toBe(true); // its own dead letters are its to declare
    await consumer.stop();
  }, 60_000);
});
