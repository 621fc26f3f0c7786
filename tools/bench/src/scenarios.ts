/**
 * Benchmark scenarios: one RPC, the servers to compare on it, and how to prepare a request for
 * each server. New scenarios are added to {@link scenarios}.
 */
import { randomBytes } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetUserRequestSchema,
  GetUserResponseSchema,
  UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { FIXED_USER_ID } from "./fixtures/fixed-user.js";
import { type RawGrpcAnswer, withGrpcClient } from "./grpc-client.js";
import { grpcFrame } from "./grpc-frame.js";
import {
  GATEWAY_SERVER,
  gatewayFixture,
  grpcJsFixture,
  grpcJsPostgresFixture,
  http2EchoFixture,
  proxyFixture,
  type RunningServer,
  runtimeFixture,
  runtimeTracedFixture,
  type ServerSpec,
  usersService,
  usersServiceOnPostgres,
} from "./servers.js";

/** The request h2load sends to one server, and how to tell its answer is right. */
export interface PreparedRequest {
  /** The framed gRPC request message (5-byte prefix + serialized message): h2load's body file. */
  body: Buffer;
  /** Headers besides the gRPC ones (a token for the gateway). */
  headers?: Record<string, string>;
  /** Throws unless `answer` is the successful answer to `body`. */
  check(answer: RawGrpcAnswer): void;
}

/** One unary RPC measured against several servers. */
export interface Scenario {
  /** Report heading, e.g. `unary GetUser`. */
  name: string;
  /** The HTTP/2 path of the method, `/package.Service/Method`. */
  path: string;
  /** Name of the server the ratios are taken against; its max rate also sets the latency rate. */
  baseline: string;
  /**
   * Name of the server whose max rate sets the latency rate instead of the baseline's, when it is
   * measured: every server of the scenario is then compared at half of that server's max.
   */
  latencyRateFrom?: string;
  /** In report order. */
  servers: readonly ServerSpec[];
  /** Creates whatever data the request needs on `server` and returns the request. */
  prepare(server: RunningServer, spec: ServerSpec): Promise<PreparedRequest>;
}

/** The account the bench registers on a real users service. */
export const BENCH_ACCOUNT = {
  email: "bench@example.com",
  password: "benchmark-password",
  displayName: "Bench",
} as const;

/** Registers the bench account (a unique variant if it exists already) and returns its id. */
async function registerBenchUser(url: string): Promise<string> {
  return withGrpcClient(url, UserService, async (users) => {
    try {
      const res = await users.registerUser(BENCH_ACCOUNT);
      if (!res.user?.id) throw new Error("RegisterUser answered without user.id");
      return res.user.id;
    } catch (err) {
      // A database given with MESHWORK_BENCH_DATABASE_URL may keep the account of an earlier run.
      if (ConnectError.from(err).code !== Code.AlreadyExists) throw err;
      const email = `bench+${randomBytes(4).toString("hex")}@example.com`;
      const res = await users.registerUser({ ...BENCH_ACCOUNT, email });
      if (!res.user?.id) throw new Error("RegisterUser answered without user.id");
      return res.user.id;
    }
  });
}

const getUserMethod = UserService.method.getUser;

/** `meshwork.users.v1.UserService/GetUser` of one existing user. */
export function unaryGetUser(): Scenario {
  return {
    name: "unary GetUser",
    path: `/${UserService.typeName}/${getUserMethod.name}`,
    baseline: grpcJsFixture().name,
    // Issue 23 compares the gateway, the bare proxy and the runtime at half the GATEWAY's max:
    // at half grpc-js's max neither proxy keeps up, and queueing is all their latencies show.
    latencyRateFrom: GATEWAY_SERVER,
    servers: [
      usersService(),
      gatewayFixture(),
      proxyFixture(),
      runtimeFixture(),
      runtimeTracedFixture(),
      grpcJsFixture(),
      http2EchoFixture(),
    ],
    prepare: prepareGetUser,
  };
}

/**
 * GetUser on a Postgres server (issue 24): the users service against a bare grpc-js server
 * running the same SQL through postgres.js with the same pool size, each on a database of its
 * own on the same server. Goal: at least 0.8x the bare server's req/s, at most 1.3x its CPU per
 * call.
 */
export function unaryGetUserOnPostgres(): Scenario {
  return {
    name: "unary GetUser on Postgres",
    path: `/${UserService.typeName}/${getUserMethod.name}`,
    baseline: grpcJsPostgresFixture().name,
    servers: [usersServiceOnPostgres(), grpcJsPostgresFixture()],
    prepare: prepareGetUser,
  };
}

async function prepareGetUser(server: RunningServer, spec: ServerSpec): Promise<PreparedRequest> {
  const id = spec.data === "seeded" ? await registerBenchUser(server.url) : FIXED_USER_ID;
  return {
    body: grpcFrame(toBinary(GetUserRequestSchema, create(GetUserRequestSchema, { id }))),
    // Asked at each use: a signed identity assertion expires (60 s), a bench run lasts longer.
    get headers() {
      return spec.headers?.(server);
    },
    check(answer) {
      if (answer.httpStatus !== 200) throw new Error(`HTTP status ${answer.httpStatus}`);
      if (answer.grpcStatus !== 0) {
        throw new Error(`grpc-status ${answer.grpcStatus ?? "missing"}: ${answer.grpcMessage ?? ""}`);
      }
      if (!answer.message) throw new Error("grpc-status 0 without a response message");
      const res = fromBinary(GetUserResponseSchema, answer.message);
      if (res.user?.id !== id) throw new Error(`answered user ${res.user?.id ?? "(none)"}, asked for ${id}`);
    },
  };
}

/** Every scenario, in run order. */
export function scenarios(): Scenario[] {
  return [unaryGetUser(), unaryGetUserOnPostgres()];
}
