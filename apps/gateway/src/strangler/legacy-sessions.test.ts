import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ExchangeLegacyTokenRequestSchema,
  ExchangeLegacyTokenResponseSchema,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { describe, expect, it } from "vitest";
import type { Downstream } from "../proxy/downstream.js";
import type { BufferedDownstream } from "./buffered-downstream.js";
import { LegacySessions, legacySessionOf } from "./legacy-sessions.js";

const jwt = (claims: object) =>
  `${Buffer.from('{"alg":"HS256"}').toString("base64url")}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.sig`;
const inAnHour = () => Date.now() + 3_600_000;

/** A users service stand-in: answers each exchange with `answer(token)`, counting the calls. */
function fakeUsers(answer: (token: string) => "ok" | "refused") {
  const calls: string[] = [];
  const dispatch = (d: Downstream) => {
    const down = d as BufferedDownstream;
    const chunks: Buffer[] = [];
    down.body.on("data", (c: Buffer) => chunks.push(c));
    down.body.once("end", () => {
      const { legacyToken } = fromBinary(ExchangeLegacyTokenRequestSchema, Buffer.concat(chunks));
      calls.push(legacyToken);
      if (answer(legacyToken) === "refused") {
        down.respond(401, { "content-type": "application/json" }, false);
        down.write(Buffer.from('{"code":"unauthenticated","message":"legacy_token: invalid"}'));
      } else {
        down.respond(200, { "content-type": "application/proto" }, false);
        const res = create(ExchangeLegacyTokenResponseSchema, {
          accessToken: `mesh-for-${legacyToken}`,
          tokenType: "Bearer",
          expireTime: timestampFromMs(inAnHour()),
        });
        down.write(Buffer.from(toBinary(ExchangeLegacyTokenResponseSchema, res)));
      }
      down.finish();
    });
  };
  return { calls, dispatch };
}

describe("legacy sessions at the strangler routes", () => {
  it("recognises a legacy session by its issuer only", () => {
    expect(legacySessionOf(`Bearer ${jwt({ iss: "legacy", sub: "u", exp: 100 })}`)).toMatchObject({
      expMs: 100_000,
    });
    expect(legacySessionOf(`Bearer ${jwt({ iss: "meshwork-users", sub: "u" })}`)).toBeUndefined();
    expect(legacySessionOf("Bearer not-a-jwt")).toBeUndefined();
    expect(legacySessionOf(undefined)).toBeUndefined();
  });

  it("caches an exchange per token, bounded (the oldest goes first), and never caches a failure", async () => {
    const users = fakeUsers((t) => (t === "bad" ? "refused" : "ok"));
    const sessions = new LegacySessions(users.dispatch, 2);
    const ex = (t: string) => sessions.exchange(t, inAnHour(), "127.0.0.1", {});
    expect(await ex("a")).toEqual({ ok: true, authorization: "Bearer mesh-for-a" });
    await ex("a");
    expect(users.calls).toEqual(["a"]);
    await ex("b");
    await ex("c"); // evicts a
    expect(sessions.size).toBe(2);
    await ex("a");
    expect(users.calls).toEqual(["a", "b", "c", "a"]);
    expect(await ex("bad")).toEqual({
      ok: false,
      status: 401,
      body: { error: "unauthenticated", message: "legacy_token: invalid" },
    });
    await ex("bad");
    expect(users.calls.filter((t) => t === "bad")).toHaveLength(2);
  });

  it("does not keep a mesh token past the legacy session's own expiry", async () => {
    const users = fakeUsers(() => "ok");
    const sessions = new LegacySessions(users.dispatch);
    await sessions.exchange("short", Date.now() + 1_000, "127.0.0.1", {});
    await sessions.exchange("short", Date.now() + 1_000, "127.0.0.1", {});
    expect(users.calls).toEqual(["short", "short"]);
    expect(sessions.size).toBe(0);
  });
});
