import { execFile } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, createFileRegistry, type DescMessage, fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  grpc,
  grpcJsClient,
  grpcJsUnary,
  loadGrpcJsPackage,
  type ManagedProcess,
  startProcess,
  waitFor,
} from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createStorage, identity, type Storage } from "../test/harness.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const main = fileURLToPath(new URL("../dist/main.js", import.meta.url));
// What `meshctl up` starts: the same service bundled into one file (tools/bundle).
const bundle = fileURLToPath(new URL("../dist/main.bundle.js", import.meta.url));
// ... which it runs as CommonJS through the code-cache launcher when the build wrote one.
const launcher = fileURLToPath(new URL("../dist/main.bundle.start.cjs", import.meta.url));

/** Asks the server's reflection service (v1) one question over a grpc-js bidi stream. */
function reflect(client: grpc.Client, request: Record<string, unknown>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const call = (
      client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, unknown> }
    ).ServerReflectionInfo();
    call.on("data", (res) => {
      resolve(res as Record<string, unknown>);
      call.end();
    });
    call.on("error", reject);
    call.write({ host: "", ...request });
  });
}

describe.each([
  ["entry point", main],
  ["bundle", bundle],
  ["bundle's CommonJS twin, through its code-cache launcher", launcher],
])("the users process (%s)", (_, entry) => {
  let storage: Storage;
  let proc: ManagedProcess;
  let port: number;

  beforeAll(async () => {
    storage = await createStorage("pglite");
    proc = startProcess(process.execPath, [entry], {
      env: { PORT: "0", SHUTDOWN_GRACE_MS: "20000", IDENTITY_TRUST: identity.trustText, ...storage.env },
    });
    port = (await proc.waitForLog((l) => l.msg === "listening")).port as number;
    await proc.waitForLog((l) => l.msg === "health changed" && l.status === "SERVING");
  });
  afterAll(async () => {
    await proc?.stop("SIGKILL");
    await storage?.remove();
  });

  it("answers grpc.health.v1.Health/Check over gRPC", async () => {
    const health = grpcJsClient(
      loadGrpcJsPackage("grpc/health/v1/health.proto"),
      "grpc.health.v1.Health",
      `127.0.0.1:${port}`,
    );
    try {
      expect(await grpcJsUnary(health, "Check", { service: "meshwork.users.v1.UserService" })).toEqual({
        status: "SERVING",
      });
    } finally {
      health.close();
    }
  });

  it("is callable by a client that knows nothing but what reflection tells it", async () => {
    const reflection = grpcJsClient(
      loadGrpcJsPackage("grpc/reflection/v1/reflection.proto"),
      "grpc.reflection.v1.ServerReflection",
      `127.0.0.1:${port}`,
    );
    try {
      const listed = await reflect(reflection, { list_services: "" });
      const names = (listed.list_services_response as { service: Array<{ name: string }> }).service.map(
        (s) => s.name,
      );
      expect(names).toEqual(
        expect.arrayContaining([
          "meshwork.users.v1.UserService",
          "grpc.health.v1.Health",
          "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection",
        ]),
      );
      const files = await reflect(reflection, { file_containing_symbol: "meshwork.users.v1.UserService" });
      const protos = (
        files.file_descriptor_response as { file_descriptor_proto: Buffer[] }
      ).file_descriptor_proto.map((b) => fromBinary(FileDescriptorProtoSchema, b));
      const byName = new Map(protos.map((p) => [p.name, p]));
      const registry = createFileRegistry(protos[0]!, (name) => byName.get(name));
      const service = registry.getService("meshwork.users.v1.UserService");
      expect(service?.methods.map((m) => m.name)).toEqual([
        "RegisterUser",
        "Login",
        "CreateFirstAdmin",
        "ExchangeLegacyToken",
        "GetUser",
        "ListUsers",
        "RotateSigningKey",
      ]);

      // Build a gRPC client for RegisterUser from the reflected descriptors alone.
      const method = service!.methods.find((m) => m.name === "RegisterUser")!;
      const codec = (desc: DescMessage) => ({
        serialize: (v: Record<string, unknown>) => Buffer.from(toBinary(desc, create(desc, v))),
        deserialize: (b: Buffer) => fromBinary(desc, b) as unknown as Record<string, unknown>,
      });
      const Ctor = grpc.makeGenericClientConstructor(
        {
          RegisterUser: {
            path: `/${service!.typeName}/${method.name}`,
            requestStream: false,
            responseStream: false,
            requestSerialize: codec(method.input).serialize,
            requestDeserialize: codec(method.input).deserialize,
            responseSerialize: codec(method.output).serialize,
            responseDeserialize: codec(method.output).deserialize,
          },
        },
        "UserService",
      );
      const dynamic = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
      try {
        const res = await grpcJsUnary<{ user: { email: string } }>(dynamic, "RegisterUser", {
          email: "reflected@example.com",
          password: "built-from-descriptors",
          displayName: "Reflected",
        });
        expect(res.user.email).toBe("reflected@example.com");
      } finally {
        dynamic.close();
      }
    } finally {
      reflection.close();
    }
  });

  it("is callable with buf curl, a Go client driven by reflection", async () => {
    const { stdout } = await promisify(execFile)(
      "npx",
      [
        "buf",
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--data",
        '{"email":"curl@example.com","password":"from-buf-curl","display_name":"Curl"}',
        `http://127.0.0.1:${port}/meshwork.users.v1.UserService/RegisterUser`,
      ],
      { cwd: root, timeout: 60_000 },
    );
    expect(JSON.parse(stdout)).toMatchObject({ user: { email: "curl@example.com", roles: ["customer"] } });
  });

  it("shuts down gracefully on SIGTERM: the call in flight completes, new calls are refused, exit 0", async () => {
    // An HTTP/1.1 Connect call whose headers have arrived but whose body has not: in flight.
    const body = JSON.stringify({ page_size: 1 });
    const response = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          method: "POST",
          path: "/meshwork.users.v1.UserService/ListUsers",
          headers: {
            "content-type": "application/json",
            "content-length": Buffer.byteLength(body),
            // As the gateway sends it for an admin (ListUsers is for admins).
            ...identity.headers("users", "00000000-0000-7000-8000-0000000000ad", "admin"),
          },
          agent: false,
        },
        (res) => {
          let text = "";
          res.on("data", (c) => {
            text += c;
          });
          res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
        },
      );
      req.on("error", reject);
      req.write(body.slice(0, 5));
      // Finish the body only once the service is draining.
      void proc
        .waitForLog((l) => l.msg === "draining")
        .then(() => {
          void waitFor(async () => {
            try {
              await fetch(`http://127.0.0.1:${port}/healthz`);
              return false;
            } catch {
              return true; // the listener no longer accepts connections
            }
          }).then(() => req.end(body.slice(5)));
        });
    });
    // Wait until the server has the request's headers (it counts it in flight), then stop it.
    // The scrape itself is one active request; the partial call makes two.
    await waitFor(async () => {
      const m = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const active = /^http_server_active_requests\{[^}]*\} (\d+)/m.exec(m);
      return Number(active?.[1] ?? 0) >= 2;
    });
    proc.child.kill("SIGTERM");
    const draining = await proc.waitForLog((l) => l.msg === "draining");
    expect(draining.inFlight).toBeGreaterThanOrEqual(1);
    const res = await response;
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body).users).toHaveLength(1);
    expect(await proc.exited).toBe(0);
    expect(proc.logs().some((l) => l.msg === "stopped")).toBe(true);
  });
});
