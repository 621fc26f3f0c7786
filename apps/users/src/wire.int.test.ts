import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { grpc, grpcJsClient, grpcJsUnary, loadGrpcJsPackage } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, identity, type RunningUsers, type Storage, startUsers } from "../test/harness.js";

/**
 * The same calls through three independent client stacks, on the wire: the generated Connect
 * client (Connect protocol, JSON and binary, HTTP/2), @grpc/grpc-js (gRPC over h2c) and plain
 * fetch (Connect JSON over HTTP/1.1). Each answers with a JSON body or a code name.
 */
type Outcome = { ok: Record<string, unknown> } | { code: string; message: string };
/** What the gateway sends upstream for an authenticated admin (GetUser and ListUsers need a caller). */
const asAdmin = () => identity.headers("users", "00000000-0000-7000-8000-0000000000ad", "admin");

type Caller = (method: string, body: Record<string, unknown>, timeoutMs?: number) => Promise<Outcome>;

const grpcCodeNames = Object.fromEntries(
  Object.entries(grpc.status).map(([name, n]) => [n, name.toLowerCase()]),
) as Record<number, string>;

function connectCaller(baseUrl: string, useBinaryFormat: boolean): Caller {
  const client = createClient(
    UserService,
    createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat }),
  );
  return async (method, body, timeoutMs) => {
    const desc =
      UserService.method[(method[0]?.toLowerCase() + method.slice(1)) as keyof typeof UserService.method];
    try {
      const fn = (client as unknown as Record<string, (r: unknown, o: unknown) => Promise<never>>)[
        desc.localName
      ]!;
      const res = await fn(fromJson(desc.input, body as JsonValue), { timeoutMs, headers: asAdmin() });
      return { ok: toJson(desc.output, res) as Record<string, unknown> };
    } catch (e) {
      const err = ConnectError.from(e);
      return {
        code: Code[err.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase(),
        message: err.rawMessage,
      };
    }
  };
}

function camelKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelKeys);
  if (v === null || typeof v !== "object") return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) => [
      k.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase()),
      camelKeys(x),
    ]),
  );
}

function grpcJsCaller(port: number): { call: Caller; close(): void } {
  const client = grpcJsClient(
    loadGrpcJsPackage("meshwork/users/v1/users.proto"),
    "meshwork.users.v1.UserService",
    `127.0.0.1:${port}`,
  );
  return {
    close: () => client.close(),
    async call(method, body, timeoutMs) {
      // proto-loader keeps field names as written in the proto.
      const snake = Object.fromEntries(
        Object.entries(body).map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v]),
      );
      try {
        const res = await grpcJsUnary(client, method, snake, { deadlineMs: timeoutMs, metadata: asAdmin() });
        return { ok: camelKeys(res) as Record<string, unknown> };
      } catch (e) {
        const err = e as grpc.ServiceError;
        return { code: grpcCodeNames[err.code] ?? String(err.code), message: err.details };
      }
    },
  };
}

function fetchCaller(baseUrl: string): Caller {
  return async (method, body, timeoutMs) => {
    const headers: Record<string, string> = { "content-type": "application/json", ...asAdmin() };
    if (timeoutMs !== undefined) headers["connect-timeout-ms"] = String(timeoutMs);
    const res = await fetch(`${baseUrl}/meshwork.users.v1.UserService/${method}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body),
    });
    const json = (await res.json()) as Record<string, unknown>;
    if (res.ok) return { ok: json };
    return { code: String(json.code), message: String(json.message) };
  };
}

describe("users on the wire, three independent clients", () => {
  let storage: Storage;
  let users: RunningUsers;
  const clients: Array<[string, Caller]> = [];
  let grpcJs: ReturnType<typeof grpcJsCaller>;

  beforeAll(async () => {
    storage = await createStorage("pglite");
    users = await startUsers(storage);
    grpcJs = grpcJsCaller(users.port);
    clients.push(
      ["connect json", connectCaller(users.url, false)],
      ["connect binary", connectCaller(users.url, true)],
      ["grpc-js", grpcJs.call],
      ["fetch http/1.1", fetchCaller(users.url)],
    );
  });
  afterAll(async () => {
    grpcJs?.close();
    await users?.service.shutdown();
    await storage?.remove();
  });

  it.each([0, 1, 2, 3])("client %#: success and every error code", async (i) => {
    const [name, call] = clients[i]!;
    const email = `wire-${i}@example.com`;
    const reg = await call("RegisterUser", { email, password: "wire-password", displayName: name });
    expect(reg, name).toHaveProperty("ok");
    const id = (reg as { ok: { user: { id: string } } }).ok.user.id;

    const got = await call("GetUser", { id });
    expect(got, name).toMatchObject({ ok: { user: { id, email } } });

    const invalid = await call("GetUser", { id: "nope" });
    expect(invalid, name).toMatchObject({ code: "invalid_argument", message: expect.stringContaining("id") });

    const missing = await call("GetUser", { id: "00000000-0000-7000-8000-000000000000" });
    expect(missing, name).toMatchObject({ code: "not_found" });

    const dup = await call("RegisterUser", { email, password: "wire-password", displayName: name });
    expect(dup, name).toMatchObject({ code: "already_exists" });

    const denied = await call("Login", { email, password: "wrong-password" });
    expect(denied, name).toMatchObject({ code: "unauthenticated" });

    const login = await call("Login", { email, password: "wire-password" });
    expect(login, name).toMatchObject({ ok: { tokenType: "Bearer" } });

    // Hashing a password takes milliseconds: a 1 ms budget cannot be met.
    const late = await call("Login", { email, password: "wire-password" }, 1);
    expect(late, name).toMatchObject({ code: "deadline_exceeded" });
  });
});
