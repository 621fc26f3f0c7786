import { randomBytes, randomUUID } from "node:crypto";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { SealedValueSchema, UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import {
  cloudEventHeaders,
  connectNats,
  createEnvelope,
  listDeadLetters,
  meshStreams,
  provision,
  sealedFieldAad,
  sealValue,
  streamName,
} from "@meshwork/events";
import { waitFor } from "@meshwork/testing";
import { JetStreamApiError, type JetStreamManager, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, type RunningUsers, type Storage, startUsers } from "../test/harness.js";
import { LEGACY_USER_SYNC_DURABLE } from "./server.js";

const SECRET = "legacy-session-secret-".padEnd(48, "u");
const SYNC_KEY = { id: "k1", key: randomBytes(32) };

/**
 * Upgrading a mesh whose legacy published its user captures on the shared LEGACY stream: the
 * users service keeps draining its old durable there (nothing is lost), reads LEGACY_USERS
 * beside it, and deletes the old durable once LEGACY holds no UserChanged any more.
 */
describe("legacy user captures moving from LEGACY to LEGACY_USERS (upgrade)", () => {
  let storage: Storage;
  let users: RunningUsers | undefined;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let ns: string;
  let seq = 0n;

  /** A capture as legacy's CDC relay published it before issue 19 (all in the clear), on `subject`. */
  async function capture(
    subject: string,
    userId: string,
    fields?: MessageInitShape<typeof UserChangedSchema>,
  ) {
    seq += 1n;
    const e = createEnvelope(
      UserChangedSchema,
      create(UserChangedSchema, {
        userId,
        sequence: seq,
        email: `${userId.slice(0, 8)}@example.com`,
        displayName: "Upgraded",
        passwordHash: "scrypt$c2FsdHNhbHQ$a2V5a2V5a2V5",
        createTime: timestampNow(),
        ...fields,
      }),
      { source: "meshwork/legacy", namespace: ns },
    );
    const h = natsHeaders();
    for (const [k, v] of Object.entries(cloudEventHeaders(e))) h.set(k, v);
    await jetstream(nc).publish(subject, e.data, { headers: h, msgID: e.id });
  }

  /** True once the users service holds `userId` (its legacy session is exchangeable). */
  async function held(userId: string): Promise<boolean> {
    return (await account(userId)) !== undefined;
  }

  /** The account the users service holds for `userId` (exchanging its legacy session), if any. */
  async function account(userId: string) {
    const client = createClient(
      UserService,
      createConnectTransport({ baseUrl: users?.url ?? "", httpVersion: "2" }),
    );
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setIssuer("legacy")
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode(SECRET));
    try {
      return (await client.exchangeLegacyToken({ legacyToken: token })).user;
    } catch (err) {
      if (ConnectError.from(err).code === Code.FailedPrecondition) return undefined;
      throw err;
    }
  }

  const oldDurable = () =>
    jsm.consumers.info(streamName(ns, "LEGACY"), LEGACY_USER_SYNC_DURABLE).then(
      () => true,
      (err: unknown) => {
        if (err instanceof JetStreamApiError && err.status === 404) return false;
        throw err;
      },
    );

  beforeAll(async () => {
    storage = await createStorage("postgres");
    ns = storage.namespace;
    nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "users-upgrade-test");
    jsm = await jetstreamManager(nc);
    // The mesh before the upgrade: LEGACY (legacy's) and users' durable on its UserChanged.
    const legacy = meshStreams.legacy(ns);
    await provision(jsm, {
      streams: [legacy],
      consumers: [
        {
          stream: legacy.name,
          durable: LEGACY_USER_SYNC_DURABLE,
          filterSubject: `${ns}meshwork.legacy.v1.UserChanged`,
        },
      ],
    });
  });
  afterAll(async () => {
    await users?.service.shutdown();
    for (const s of ["LEGACY", "LEGACY_USERS", "DLQ_USERS"])
      await jsm.streams.delete(streamName(ns, s)).catch(() => {});
    await nc?.close();
    await storage?.remove();
  });

  it("applies what was pending on LEGACY and what arrives on both streams, then retires the old durable once LEGACY is empty of users", async () => {
    const pending = randomUUID();
    await capture(`${ns}meshwork.legacy.v1.UserChanged`, pending);
    users = await startUsers(storage, { LEGACY_TOKEN_SECRET: SECRET });
    await waitFor(() => held(pending), { what: "the capture left on LEGACY applied", timeoutMs: 30_000 });
    // An old-format capture (email and name in the clear, issue 19 h19seal) still applies whole.
    expect(await account(pending)).toMatchObject({
      email: `${pending.slice(0, 8)}@example.com`,
      displayName: "Upgraded",
    });

    // A legacy not upgraded yet still publishes on LEGACY; an upgraded one on LEGACY_USERS.
    const late = randomUUID();
    await capture(`${ns}meshwork.legacy.v1.UserChanged`, late);
    await provision(jsm, { streams: [meshStreams.legacyUsers(ns)] });
    const current = randomUUID();
    await capture(`${ns}meshwork.legacy_users.v1.UserChanged`, current);
    await waitFor(async () => (await held(late)) && (await held(current)), {
      what: "the captures on both streams applied",
      timeoutMs: 30_000,
    });
    expect(await oldDurable()).toBe(true);

    // LEGACY still holds UserChanged: a restart keeps the old durable.
    await users.service.shutdown();
    users = await startUsers(storage, { LEGACY_TOKEN_SECRET: SECRET });
    expect(await oldDurable()).toBe(true);

    // Once they are gone (aged out after LEGACY's 7 days; purged here), the next start deletes it.
    await users.service.shutdown();
    await jsm.streams.purge(streamName(ns, "LEGACY"), { filter: `${ns}meshwork.legacy.v1.UserChanged` });
    users = await startUsers(storage, { LEGACY_TOKEN_SECRET: SECRET });
    expect(await oldDurable()).toBe(false);
    // And LEGACY_USERS keeps working.
    const after = randomUUID();
    await capture(`${ns}meshwork.legacy_users.v1.UserChanged`, after);
    await waitFor(() => held(after), { what: "a capture after the retirement applied", timeoutMs: 30_000 });
  });

  // Review h19seal2 finding 5: what legacy publishes now (hash, email and name sealed) applies
  // opened; a capture that fails is dead-lettered without its clear email or name.
  it("applies a sealed capture with its opened email and name, and dead-letters a failing one with no clear email", async () => {
    await users?.service.shutdown();
    users = await startUsers(storage, {
      LEGACY_TOKEN_SECRET: SECRET,
      LEGACY_SYNC_KEY: `${SYNC_KEY.id}:${SYNC_KEY.key.toString("base64")}`,
      CONSUMER_MAX_DELIVER: "1",
    });
    const seal = (value: string, userId: string, field: string) =>
      create(SealedValueSchema, sealValue(SYNC_KEY, value, sealedFieldAad(userId, field)));
    const sealedUser = randomUUID();
    await capture(`${ns}meshwork.legacy_users.v1.UserChanged`, sealedUser, {
      email: "",
      displayName: "",
      passwordHash: "",
      sealedPasswordHashV2: seal("scrypt$c2FsdHNhbHQ$a2V5a2V5a2V5", sealedUser, "sealed_password_hash_v2"),
      sealedEmail: seal("sealed.ada@example.com", sealedUser, "sealed_email"),
      sealedDisplayName: seal("Sealed Ada", sealedUser, "sealed_display_name"),
    });
    await waitFor(() => held(sealedUser), { what: "the sealed capture applied", timeoutMs: 30_000 });
    expect(await account(sealedUser)).toMatchObject({
      email: "sealed.ada@example.com",
      displayName: "Sealed Ada",
    });

    // Published between the two upgrades (email and name clear), its hash sealed under a key
    // users does not hold: refused, then dead-lettered, with the clear email and name blanked.
    const failing = randomUUID();
    await capture(`${ns}meshwork.legacy_users.v1.UserChanged`, failing, {
      email: "clear.grace@example.com",
      displayName: "Clear Grace",
      passwordHash: "",
      sealedPasswordHash: create(
        SealedValueSchema,
        sealValue({ id: "k9", key: randomBytes(32) }, "scrypt$x", failing),
      ),
    });
    const dlq = streamName(ns, "DLQ_USERS");
    const letter = await waitFor(
      async () =>
        (await listDeadLetters(jsm, dlq).catch(() => [])).find((l) => l.error.includes('key id "k9"')),
      { what: "the failing capture dead-lettered", timeoutMs: 30_000 },
    );
    const stored = await jsm.streams.getMessage(dlq, { seq: letter.seq });
    const bytes = Buffer.from(stored?.data ?? new Uint8Array());
    expect(bytes.length).toBeGreaterThan(0);
    for (const clear of ["clear.grace@example.com", "clear.grace", "Clear Grace"])
      expect(bytes.includes(Buffer.from(clear)), clear).toBe(false);
    expect(JSON.stringify(letter)).not.toContain("clear.grace");
    expect(await held(failing)).toBe(false);
  });
});
