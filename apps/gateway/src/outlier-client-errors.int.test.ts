import http from "node:http";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { meshworkFiles } from "@meshwork/contracts";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Ids,
  idFailingWith,
  startUsersUpstream,
  testGatewayConfig,
  type UsersUpstream,
} from "../test/users-upstream.js";
import type { Policy } from "./auth.js";
import { createGateway, type Gateway } from "./gateway.js";
import { parseRateLimits } from "./ratelimit.js";

const PREFIX = "/meshwork.users.v1.UserService/";
/** Every method open but ListUsers, which wants a token (none is sent: UNAUTHENTICATED at the edge). */
const policies = new Map<string, Policy>(
  meshworkFiles.flatMap((f) =>
    f.services.flatMap((s) =>
      s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const] as [string, Policy]),
    ),
  ),
);
policies.set(`${PREFIX}ListUsers`, { kind: "authenticated" });

const ROUNDS = 6;

function codeOf(err: unknown): string {
  return err === undefined ? "OK" : (Code[ConnectError.from(err).code] ?? "?");
}

/** An HTTP/1.1 POST with any headers (ones fetch would refuse to send); resolves with the status. */
function h1Post(url: string, path: string, headers: Record<string, string>, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}${path}`, { method: "POST", headers }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("outlier ejection ignores calls that fail because of the client (issue 25.6)", () => {
  let upstream: UsersUpstream;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startUsersUpstream();
    gateway = createGateway({
      config: testGatewayConfig(upstream.url, {
        maxRequestBytes: 1024,
        rateLimits: parseRateLimits(`${PREFIX.slice(1)}Login=1/1m:1`),
      }),
      policies,
      // Three consecutive failures would eject the only endpoint for a minute.
      outlier: { consecutiveFailures: 3, baseEjectionMs: 60_000, maxEjectionMs: 60_000 },
    });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  it("a flood of client errors of every kind leaves the healthy endpoint in, unblamed", async () => {
    const grpcUsers = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    const connectUsers = createClient(
      UserService,
      createConnectTransport({ baseUrl: url, httpVersion: "1.1" }),
    );
    const seen = new Map<string, number>();
    const note = (kind: string, outcome: string) => {
      const key = `${kind}: ${outcome}`;
      seen.set(key, (seen.get(key) ?? 0) + 1);
    };
    for (let round = 0; round < ROUNDS; round++) {
      // Codes the service answers because of the request.
      for (const code of [
        Code.InvalidArgument,
        Code.Unauthenticated,
        Code.PermissionDenied,
        Code.NotFound,
        Code.AlreadyExists,
        Code.FailedPrecondition,
        Code.OutOfRange,
      ]) {
        const err = await grpcUsers.getUser({ id: idFailingWith(code) }).then(
          () => undefined,
          (e) => e,
        );
        note(`upstream ${Code[code]}`, codeOf(err));
      }
      // UNAUTHENTICATED at the gateway (no token).
      note(
        "no token",
        codeOf(
          await grpcUsers.listUsers({ pageSize: 1 }).then(
            () => undefined,
            (e) => e,
          ),
        ),
      );
      // RESOURCE_EXHAUSTED from the gateway's own limits: the rate limit, the request size.
      note(
        "rate limited",
        codeOf(
          await connectUsers.login({ email: "a@example.com", password: "x" }).then(
            () => undefined,
            (e) => e,
          ),
        ),
      );
      note(
        "too large",
        codeOf(
          await grpcUsers
            .registerUser({ email: "a@example.com", password: "x".repeat(4096), displayName: "A" })
            .then(
              () => undefined,
              (e) => e,
            ),
        ),
      );
      // A deadline the client set too short for the method.
      note(
        "short deadline",
        codeOf(
          await grpcUsers.getUser({ id: Ids.slow }, { timeoutMs: 30 }).then(
            () => undefined,
            (e) => e,
          ),
        ),
      );
      // The client cancels once the call reached the service.
      const abort = new AbortController();
      const before = upstream.methods.length;
      const pending = grpcUsers.getUser({ id: Ids.slow }, { signal: abort.signal }).then(
        () => undefined,
        (e) => e,
      );
      await waitFor(() => upstream.methods.length > before, { what: "the call upstream" });
      abort.abort();
      note("client cancel", codeOf(await pending));
      // Malformed requests: a Connect body that is not JSON, a GET to a method with side effects,
      // a hop-by-hop header HTTP/2 forbids (`te` other than `trailers`).
      note(
        "bad json",
        `http_${await h1Post(url, `${PREFIX}GetUser`, { "content-type": "application/json" }, "{not json")}`,
      );
      note(
        "GET with side effects",
        `http_${(await fetch(`${url}${PREFIX}RegisterUser?connect=v1&encoding=json&message=%7B%7D`)).status}`,
      );
      note(
        "te: gzip",
        `http_${await h1Post(url, `${PREFIX}GetUser`, { "content-type": "application/json", te: "gzip" }, `{"id":"${Ids.ok}"}`)}`,
      );
      // Headers that fit the gateway's limit but, with what the gateway adds, not the service's.
      note(
        "big headers",
        `http_${await h1Post(url, `${PREFIX}GetUser`, { "content-type": "application/json", "x-pad": "p".repeat(16_200) }, `{"id":"${Ids.ok}"}`)}`,
      );
    }
    const endpoint = gateway.upstreams.clusters.get("users")?.[0];
    expect({
      failures: endpoint?.failures,
      ejections: endpoint?.ejections,
      outcomes: [...seen.keys()].sort(),
    }).toEqual({
      failures: 0,
      ejections: 0,
      outcomes: [
        "GET with side effects: http_405",
        "bad json: http_400",
        "big headers: http_431",
        "client cancel: Canceled",
        "no token: Unauthenticated",
        "rate limited: ResourceExhausted",
        // The first Login goes through: the service refuses the password.
        "rate limited: Unauthenticated",
        "short deadline: DeadlineExceeded",
        // Forwarded without the `te` HTTP/2 forbids.
        "te: gzip: http_200",
        "too large: ResourceExhausted",
        "upstream AlreadyExists: AlreadyExists",
        "upstream FailedPrecondition: FailedPrecondition",
        "upstream InvalidArgument: InvalidArgument",
        "upstream NotFound: NotFound",
        "upstream OutOfRange: OutOfRange",
        "upstream PermissionDenied: PermissionDenied",
        "upstream Unauthenticated: Unauthenticated",
      ],
    });
    // And the endpoint serves the next call.
    expect((await grpcUsers.getUser({ id: Ids.ok })).user?.id).toBe(Ids.ok);
  });
});
