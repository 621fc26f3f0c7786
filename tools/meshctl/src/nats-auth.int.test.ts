import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { cacheBucket, createNatsKvTier, encodeEntry } from "@meshwork/cache";
import { registerInstance, watchRegistry } from "@meshwork/discovery";
import { connectNats, consumerOn, meshStreams, provision } from "@meshwork/events";
import { freePort, uniqueName, waitFor } from "@meshwork/testing";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureNats, type NatsHandle } from "./nats.js";
import { meshNatsUsers } from "./nats-auth.js";
import { findServices } from "./services.js";

// The repository's processes with a NATS user, each with the streams its package.json consumes
// (users: legacy_users and legacy; inventory: legacy; legacy: inventory and orders).
const SERVICES = findServices(fileURLToPath(new URL("../../..", import.meta.url)))
  .filter((m) => m.kind === "service" || m.kind === "legacy")
  .map((m) => ({ name: m.name, consumes: m.consumes }));

/** Records the permission violations the server reports to one connection. */
function violations(nc: NatsConnection): string[] {
  const seen: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === "error" && s.error.name === "PermissionViolationError") {
        const e = s.error as Error & { operation: string; subject: string };
        seen.push(`${e.operation} ${e.subject}`);
      }
    }
  })();
  return seen;
}

const rejected = (p: Promise<unknown>) =>
  p.then(
    () => "resolved",
    (e: unknown) => (e instanceof Error ? e.message : String(e)),
  );

describe("the NATS meshctl starts: a user per process, each with its own permissions (real nats-server)", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-nats-auth-"));
  const bucket = uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_");
  let nats: NatsHandle;
  const open: NatsConnection[] = [];
  const as = async (user: string) => {
    const nc = await connectNats(nats.url, `test-${user}`, nats.credentials(user));
    open.push(nc);
    return nc;
  };

  beforeAll(async () => {
    const users = meshNatsUsers(join(home, "nats-auth"), SERVICES, { bucket, namespace: "" });
    // Nothing answers on this port: ensureNats starts nats-server with the generated config.
    nats = await ensureNats({ url: `nats://127.0.0.1:${await freePort()}`, home, autoPort: true, users });
    expect(nats.origin).toBe("started");
  });
  afterAll(async () => {
    for (const nc of open) await nc.close().catch(() => {});
    await nats?.stop();
    rmSync(home, { recursive: true, force: true });
  });

  it("keeps its configuration and passwords owner-only, and refuses a client without a valid user", async () => {
    for (const f of ["nats-auth/nats.conf", "nats-auth/credentials.json"]) {
      expect(statSync(join(home, f)).mode & 0o777).toBe(0o600);
    }
    const attempt = (opts: { user?: string; pass?: string }) =>
      rejected(
        connect({ servers: nats.url, reconnect: false, timeout: 2_000, ...opts }).then((nc) => nc.close()),
      );
    expect(await attempt({})).toMatch(/Authorization Violation/i);
    expect(await attempt({ user: "orders", pass: "guessed" })).toMatch(/Authorization Violation/i);
    expect(await attempt({ user: "orders", pass: nats.credentials("orders")?.password })).toBe("resolved");
  });

  it("lets a service announce itself only under its own name: another's key is a permission violation, and readers never see it", async () => {
    const orders = await as("orders");
    const users = await as("users");
    const gateway = await as("gateway");
    const seen = violations(orders);
    const real = await registerInstance({
      nc: users,
      bucket,
      service: "users",
      instanceId: randomUUID(),
      address: "127.0.0.1:50051",
      protocols: ["grpc"],
      version: "1.0.0",
    });
    await registerInstance({
      nc: orders,
      bucket,
      service: "orders",
      instanceId: randomUUID(),
      address: "127.0.0.1:50054",
      protocols: ["grpc"],
      version: "1.0.0",
    });
    const watcher = await watchRegistry({ nc: gateway, bucket });
    await watcher.ready;
    await waitFor(() => watcher.instances("orders").length === 1 && watcher.instances("users").length === 1, {
      what: "both real instances at the gateway",
    });

    // The attack of issue 25: orders' credentials write a fake `users` endpoint, or remove the real one.
    const kv = await new Kvm(orders).open(bucket);
    const fake = { service: "users", instanceId: "fake", address: "127.0.0.1:6666", protocols: ["grpc"] };
    expect(
      await rejected(
        kv.put("users.fake", JSON.stringify({ ...fake, heartbeatAt: Date.now() }), { timeout: 1_000 }),
      ),
    ).not.toBe("resolved");
    expect(await rejected(kv.delete(`users.${real.record.instanceId}`))).not.toBe("resolved");
    await waitFor(() => seen.some((v) => v === `publish $KV.${bucket}.users.fake`), {
      what: `the server's permission violation (seen: ${seen.join("; ")})`,
    });
    expect(watcher.instances("users").map((r) => r.address)).toEqual(["127.0.0.1:50051"]);
    // And the gateway's user may read the registry but write nothing in it.
    const asGateway = await new Kvm(gateway).open(bucket);
    expect(await rejected(asGateway.put("users.fake", "{}", { timeout: 1_000 }))).not.toBe("resolved");
    await watcher.stop();
  });

  it("lets a service publish only its own events, and its consumers read what they consume", async () => {
    const users = await as("users");
    const orders = await as("orders");
    const notifications = await as("notifications");
    const seen = violations(orders);
    const stream = meshStreams.users("");
    await provision(await jetstreamManager(users), { streams: [stream] });
    await jetstream(users).publish("meshwork.users.registered", "real", { msgID: randomUUID() });
    const forged = jetstream(orders).publish("meshwork.users.registered", "forged", { timeout: 1_000 });
    expect(await rejected(forged)).not.toBe("resolved");
    await waitFor(() => seen.includes("publish meshwork.users.registered"), { what: "the violation" });
    // Nor may it delete or purge another service's stream.
    expect(await rejected((await jetstreamManager(orders)).streams.delete(stream.name))).not.toBe("resolved");

    // Notifications may not declare the stream it consumes (only its owner sets its config); it
    // provisions its durable consumer on it, and reads the one real event.
    expect(await rejected(provision(await jetstreamManager(notifications), { streams: [stream] }))).not.toBe(
      "resolved",
    );
    const durable = "notifications";
    await provision(await jetstreamManager(notifications), {
      consumers: [consumerOn(stream, durable)],
    });
    const consumer = await jetstream(notifications).consumers.get(stream.name, durable);
    const batch = await consumer.fetch({ max_messages: 5, expires: 1_000 });
    const got: string[] = [];
    for await (const m of batch) {
      got.push(m.string());
      m.ack();
    }
    expect(got).toEqual(["real"]);
    // But it may not purge what it reads.
    expect(await rejected((await jetstreamManager(notifications)).streams.purge(stream.name))).not.toBe(
      "resolved",
    );
  });

  it("keeps legacy's captured users (LEGACY_USERS, password hashes) to the users service: legacy declares and publishes, inventory and legacy cannot read it", async () => {
    const legacy = await as("legacy");
    const users = await as("users");
    const inventory = await as("inventory");
    const legacyUsers = meshStreams.legacyUsers("");
    // Legacy owns both capture streams (its CDC relay declares them); users may not declare it.
    await provision(await jetstreamManager(legacy), { streams: [meshStreams.legacy(""), legacyUsers] });
    expect(await rejected(provision(await jetstreamManager(users), { streams: [legacyUsers] }))).not.toBe(
      "resolved",
    );
    const info = await (await jetstreamManager(legacy)).streams.info(legacyUsers.name);
    expect(info.config.max_age).toBe(24 * 3_600 * 1e9);
    const ack = await jetstream(legacy).publish("meshwork.legacy_users.v1.UserChanged", "scrypt$hash", {
      msgID: randomUUID(),
    });
    expect(ack.stream).toBe(legacyUsers.name);

    // Users: its durable (and its own dead letters), and the capture.
    await provision(await jetstreamManager(users), {
      streams: [meshStreams.deadLetters("", "users")],
      consumers: [consumerOn(legacyUsers, "users-legacy-sync")],
    });
    const consumer = await jetstream(users).consumers.get(legacyUsers.name, "users-legacy-sync");
    const m = await consumer.next({ expires: 2_000 });
    expect(m?.string()).toBe("scrypt$hash");
    m?.ack();

    // Inventory and legacy: no consumer of any kind (durable, ephemeral, ordered), no direct read.
    for (const [who, nc] of [
      ["inventory", inventory],
      ["legacy", legacy],
    ] as const) {
      const jsm = await jetstreamManager(nc);
      const attempts: Record<string, () => Promise<unknown>> = {
        durable: () =>
          jsm.consumers.add(legacyUsers.name, {
            durable_name: `${who}-peek`,
            ack_policy: AckPolicy.Explicit,
          }),
        ephemeral: () => jsm.consumers.add(legacyUsers.name, { ack_policy: AckPolicy.None }),
        ordered: async () => (await jetstream(nc).consumers.get(legacyUsers.name)).next({ expires: 1_000 }),
        read: () => jsm.streams.getMessage(legacyUsers.name, { seq: 1 }),
        "users' durable": async () =>
          (await jetstream(nc).consumers.get(legacyUsers.name, "users-legacy-sync")).next({ expires: 1_000 }),
      };
      for (const [how, attempt] of Object.entries(attempts)) {
        const outcome = await rejected(attempt().then((r) => (r ? "resolved" : "nothing")));
        expect(`${who} ${how}: ${outcome}`).not.toMatch(/: (resolved|nothing)$/);
      }
      // A subscription on the subject itself (core NATS) is refused too.
      const seen = violations(nc);
      nc.subscribe("meshwork.legacy_users.>");
      await waitFor(() => seen.some((v) => v.startsWith("subscription meshwork.legacy_users.>")), {
        what: `${who}'s subscription refused (seen: ${seen.join("; ")})`,
      });
    }
    const consumers = await (await jetstreamManager(await as("meshctl"))).consumers
      .list(legacyUsers.name)
      .next();
    expect(consumers.map((c) => c.name)).toEqual(["users-legacy-sync"]);
  });

  it("lets the gateway use its own cache bucket (the shared JWKS) and no service's", async () => {
    const gateway = await as("gateway");
    const entry = encodeEntry({
      kind: "value",
      version: 1,
      expiresAt: Date.now() + 60_000,
      payload: new Uint8Array([1]),
    });
    const own = await createNatsKvTier({ nc: gateway, bucket: cacheBucket("", "gateway"), maxTtlMs: 60_000 });
    expect(await own.offer("jwks.set.x", entry, 60_000)).toBe(true);
    expect(new Uint8Array((await own.get("jwks.set.x")) ?? [])).toEqual(entry);
    // Orders' cache bucket (orders creates it) is not the gateway's to read or write.
    const orders = await createNatsKvTier({
      nc: await as("orders"),
      bucket: cacheBucket("", "orders"),
      maxTtlMs: 60_000,
    });
    await orders.offer("product.x", entry, 60_000);
    const theirs = await createNatsKvTier({
      nc: gateway,
      bucket: cacheBucket("", "orders"),
      maxTtlMs: 60_000,
    });
    expect(await rejected(theirs.offer("product.x", entry, 60_000))).not.toBe("resolved");
  });
});
