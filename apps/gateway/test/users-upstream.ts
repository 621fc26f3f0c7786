import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  file_meshwork_users_v1_users,
  UserSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { parseUpstreams } from "@meshwork/discovery";
import { createService, type RuntimeConfig, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import type { GatewayConfig } from "../src/config.js";

/** GetUser ids the test upstream answers in a particular way. */
export const Ids = {
  ok: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a11",
  /** Waits until the call is cancelled (or 10 s). */
  slow: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a14",
} as const;

/** Client-caused codes the upstream answers GetUser with, by id: `<code number>` in the id's last group. */
export function idFailingWith(code: Code): string {
  return `0b9a4a7e-8a43-4a55-9d2b-${String(code).padStart(12, "0")}`;
}

/**
 * ListUsers with a page size from this up answers about that many KB, in users of 100 KB each:
 * few long strings, so that the service spends little time encoding it (2,000 users of 1 KB took
 * it 20-40 ms an answer, long enough for 60 of them to delay other calls by seconds).
 */
export const LARGE_PAGE = 1_000;

const LONG_NAME = "n".repeat(100_000);

export interface UsersUpstream {
  service: Service;
  url: string;
  /** The request method (GET or POST) of every GetUser the upstream served. */
  methods: string[];
}

/**
 * An in-memory users service for gateway tests: GetUser answers `Ids.ok` with a user, waits on
 * `Ids.slow`, fails with the code `idFailingWith(code)` names, NOT_FOUND otherwise; ListUsers
 * answers nobody, or a large page from `LARGE_PAGE` up.
 */
export async function startUsersUpstream(config: Partial<RuntimeConfig> = {}): Promise<UsersUpstream> {
  const methods: string[] = [];
  const service = createService({
    name: "users",
    config: testRuntimeConfig(config),
    files: [file_meshwork_users_v1_users],
    services: [UserService],
    routes(router) {
      router.service(UserService, {
        async getUser(req, ctx) {
          methods.push(ctx.requestMethod);
          if (req.id === Ids.slow) {
            await new Promise<void>((resolve) => {
              ctx.signal.addEventListener("abort", () => resolve(), { once: true });
              setTimeout(resolve, 10_000).unref();
            });
          }
          if (req.id === Ids.ok || req.id === Ids.slow) {
            return { user: create(UserSchema, { id: req.id, email: "a@example.com" }) };
          }
          const code = Number(req.id.slice(req.id.lastIndexOf("-") + 1));
          if (code > 0 && code < 17) throw new ConnectError(`failing with ${Code[code]}`, code as Code);
          throw new ConnectError("user is missing", Code.NotFound);
        },
        async listUsers(req) {
          // From LARGE_PAGE up, about page_size KB: a large answer.
          const n = req.pageSize >= LARGE_PAGE ? Math.ceil(req.pageSize / 100) : 0;
          const users = Array.from({ length: n }, () =>
            create(UserSchema, { id: Ids.ok, email: "a@example.com", displayName: LONG_NAME }),
          );
          return { users, nextPageToken: "" };
        },
        async registerUser() {
          throw new ConnectError("email taken", Code.AlreadyExists);
        },
        async login() {
          throw new ConnectError("wrong password", Code.Unauthenticated);
        },
      });
    },
  });
  const { url } = await service.start();
  return { service, url, methods };
}

/** A gateway configuration for tests: port 0, no discovery, `users` routed to `usersUrl`. */
export function testGatewayConfig(usersUrl: string, overrides: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    host: "127.0.0.1",
    port: 0,
    adminHost: "127.0.0.1",
    adminPort: 0,
    logLevel: "silent",
    upstreams: parseUpstreams(`users=${usersUrl}`),
    jwksUrl: "http://127.0.0.1:1/unused",
    jwksCooldownMs: 5_000,
    jwtIssuer: "meshwork-users",
    jwtAudience: "meshwork",
    rateLimits: [],
    corsOrigins: [],
    maxRequestBytes: 64 * 1024,
    retryMaxAttempts: 3,
    defaultTimeoutMs: 5_000,
    maxTimeoutMs: 20_000,
    shutdownGraceMs: 1_000,
    ...overrides,
  };
}
