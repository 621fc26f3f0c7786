import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserChangedSchema } from "@meshwork/contracts/meshwork/legacy/v1/events";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import {
  cloudEventHeaders,
  connectNats,
  createEnvelope,
  meshStreams,
  provision,
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

  /** A capture as legacy's CDC relay publishes it, on `subject`. */
  async function capture(subject: string, userId: string) {
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
    for (const s of ["LEGACY", "LEGACY_USERS"]) await jsm.streams.delete(streamName(ns, s)).catch(() => {});
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
});
