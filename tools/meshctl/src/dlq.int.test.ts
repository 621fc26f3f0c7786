import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { connectNats, listDeadLetters, meshStreams, provision, streamName } from "@meshwork/events";
import { type ManagedProcess, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const meshctl = join(root, "tools/meshctl/dist/main.js");
const notificationsMain = join(root, "apps/notifications/dist/main.js");
const run = promisify(execFile);

describe("meshctl events dlq", () => {
  const namespace = `${uniqueName("t")}.`;
  const dir = mkdtempSync(join(tmpdir(), "mw-dlq-"));
  const natsUrl = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
  let notifications: ManagedProcess;
  let nc: NatsConnection;

  beforeAll(async () => {
    nc = await connectNats(natsUrl, "dlq-test");
    // USERS is the users service's stream: notifications consumes it without declaring it.
    await provision(await jetstreamManager(nc), { streams: [meshStreams.users(namespace)] });
    notifications = startProcess(process.execPath, [notificationsMain], {
      env: {
        PORT: "0",
        DATA_DIR: dir,
        EVENTS_NAMESPACE: namespace,
        DATABASE_URL: "",
        NATS_URL: natsUrl,
        DISCOVERY: "static",
      },
    });
    await notifications.waitForLog((l) => l.msg === "health changed" && l.status === "SERVING");
  });
  afterAll(async () => {
    await notifications?.stop();
    const jsm = await jetstreamManager(nc);
    for (const s of ["USERS", "DLQ_NOTIFICATIONS"])
      await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
    await nc.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const meshctlRun = async (...args: string[]) =>
    (
      await run(process.execPath, [meshctl, "events", "dlq", ...args], {
        env: { ...process.env, EVENTS_NAMESPACE: namespace, NATS_URL: natsUrl },
      })
    ).stdout;

  it("lists a dead letter with its error and delivery count, and replays it", async () => {
    const jsm = await jetstreamManager(nc);
    const dlq = streamName(namespace, "DLQ_NOTIFICATIONS");
    const h = headers();
    h.set("ce-specversion", "1.0");
    h.set("ce-id", "poison-1");
    h.set("ce-type", "meshwork.users.v1.UserRegistered");
    h.set("ce-source", "/test");
    h.set("ce-time", new Date().toISOString());
    await jetstream(nc).publish(
      `${namespace}meshwork.users.v1.UserRegistered`,
      new Uint8Array([0xff, 0xff]),
      {
        headers: h,
        msgID: "poison-1",
      },
    );
    await waitFor(async () => (await jsm.streams.info(dlq)).state.messages === 1, {
      what: "the dead letter",
    });

    const listed = await meshctlRun("list");
    expect(listed).toMatch(
      /DLQ_NOTIFICATIONS\s+1\s+notifications\s+meshwork\.users\.v1\.UserRegistered\s+poison-1\s+1\s+/,
    );
    expect(listed).toContain("not a valid meshwork.users.v1.UserRegistered");
    expect(listed).toContain("1 dead letter(s)");

    const replayed = await meshctlRun("replay", "--service", "notifications", "--all");
    expect(replayed).toMatch(/replayed \S+#1: meshwork\.users\.v1\.UserRegistered poison-1/);
    // Re-delivered to the consumer, which (the payload still being bad) dead-letters it again.
    await waitFor(
      async () => {
        const info = await jsm.streams.info(dlq);
        return info.state.messages === 1 && info.state.first_seq === 2;
      },
      { what: "the replayed event to come back as dead letter 2" },
    );
    expect(await meshctlRun("list", "--service", "notifications")).toMatch(
      /\s2\s+notifications\s+\S+\s+poison-1/,
    );
  });
  it("lists and replays one durable consumer's letters only with --consumer, refusing another's by number", async () => {
    const jsm = await jetstreamManager(nc);
    const dlq = streamName(namespace, "DLQ_NOTIFICATIONS");
    const [subject] = (await jsm.streams.info(dlq)).config.subjects;
    // Another durable of the same service gave up on an event too.
    const h = headers();
    h.set("ce-id", "audit-1");
    h.set("ce-type", "meshwork.users.v1.UserRegistered");
    h.set("dlq-original-subject", `${namespace}meshwork.users.v1.UserRegistered`);
    h.set("dlq-consumer", "notifications-audit");
    h.set("dlq-deliveries", "5");
    h.set("dlq-error", "audit store down");
    h.set("dlq-time", new Date().toISOString());
    const audit = (await jetstream(nc).publish(subject as string, new Uint8Array([1]), { headers: h })).seq;
    const before = await meshctlRun("list");
    const poison = Number(/\s(\d+)\s+notifications\s+\S+\s+poison-1/.exec(before)?.[1]);
    expect(poison).toBeGreaterThan(0);

    // The filter applies before the limit: the audit letter comes after the poison.
    expect((await listDeadLetters(jsm, dlq, 1, "notifications-audit")).map((l) => l.eventId)).toEqual([
      "audit-1",
    ]);

    const listed = await meshctlRun("list", "--consumer", "notifications-audit");
    expect(listed).toContain("audit-1");
    expect(listed).not.toContain("poison-1");
    expect(listed).toContain("1 dead letter(s)");

    // A numbered letter of another durable: refused, nothing replayed.
    const refused = await meshctlRun(
      "replay",
      "--service",
      "notifications",
      "--consumer",
      "notifications-audit",
      String(poison),
    ).then(
      () => expect.unreachable("replay of another durable's letter succeeded"),
      (err: { code: number; stdout: string }) => err,
    );
    expect(refused.code).toBe(2);
    expect(refused.stdout).toContain(
      `dead letter ${poison} in ${dlq} is consumer notifications's, not notifications-audit's`,
    );
    expect((await jsm.streams.info(dlq)).state.messages).toBe(2);

    const replayed = await meshctlRun(
      "replay",
      "--service",
      "notifications",
      "--consumer",
      "notifications",
      "--all",
    );
    expect(replayed).toMatch(
      new RegExp(`replayed \\S+#${poison}: meshwork\\.users\\.v1\\.UserRegistered poison-1`),
    );
    expect(replayed).not.toContain("audit-1");
    // The audit letter stays; the poison comes back as a new letter (its payload is still bad).
    await waitFor(
      async () => {
        const letters = await meshctlRun("list");
        return (
          letters.includes("audit-1") &&
          new RegExp(`\\s(?!${poison}\\s)\\d+\\s+notifications\\s+\\S+\\s+poison-1`).test(letters)
        );
      },
      { what: "the audit letter kept and the poison dead-lettered again" },
    );
    expect(await jsm.streams.getMessage(dlq, { seq: audit })).toBeTruthy();
  });

  it("fails a replay of a service that has no dead-letter stream (a mistyped --service), rather than say nothing", async () => {
    const failed = await meshctlRun("replay", "--service", "notificatons", "--all").then(
      () => expect.unreachable("replay of a missing stream succeeded"),
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(failed.code).toBe(1);
    expect(failed.stdout).not.toContain("nothing to replay");
  });
});
