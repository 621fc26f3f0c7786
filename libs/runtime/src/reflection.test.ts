import { execFile } from "node:child_process";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, createFileRegistry, fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, createClient, createRouterTransport } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  ServerReflection,
  type ServerReflectionRequestSchema,
  type ServerReflectionResponse,
} from "@meshwork/contracts/grpc/reflection/v1/reflection";
import {
  ServerReflectionRequestSchema as ServerReflectionRequestV1alphaSchema,
  ServerReflection as ServerReflectionV1alpha,
} from "@meshwork/contracts/grpc/reflection/v1alpha/reflection";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { describe, expect, it } from "vitest";
import { registerReflectionServices } from "./reflection.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const reflectionProto = fileURLToPath(
  new URL("../../../third_party/proto/grpc/reflection/v1/reflection.proto", import.meta.url),
);

const usersProto = "meshwork/users/v1/users.proto";
const userServiceMethods = [
  "RegisterUser",
  "Login",
  "CreateFirstAdmin",
  "ExchangeLegacyToken",
  "GetUser",
  "ListUsers",
  "RotateSigningKey",
];

function routes(router: ConnectRouter): void {
  router.service(UserService, {});
  registerReflectionServices(router, [file_meshwork_users_v1_users]);
}

async function* stream<T>(items: readonly T[]): AsyncIterable<T> {
  for (const item of items) yield item;
}

type RequestInit = MessageInitShape<typeof ServerReflectionRequestSchema>;

/** Sends `requests` on one v1 ServerReflectionInfo stream and collects every response. */
async function reflect(requests: readonly RequestInit[]): Promise<ServerReflectionResponse[]> {
  const client = createClient(ServerReflection, createRouterTransport(routes));
  const responses: ServerReflectionResponse[] = [];
  for await (const response of client.serverReflectionInfo(stream(requests))) responses.push(response);
  return responses;
}

/** The `.proto` names of the files in a file_descriptor_response, in order. */
function fileNames(response: ServerReflectionResponse | undefined): string[] {
  if (response?.messageResponse.case !== "fileDescriptorResponse") {
    throw new Error(`expected file descriptors, got ${response?.messageResponse.case}`);
  }
  return response.messageResponse.value.fileDescriptorProto.map(
    (bytes) => fromBinary(FileDescriptorProtoSchema, bytes).name,
  );
}

function symbol(name: string): RequestInit {
  return { messageRequest: { case: "fileContainingSymbol", value: name } };
}

describe("registerReflectionServices in process", () => {
  it("lists the contract's services, health and both reflection versions", async () => {
    const [response] = await reflect([
      { host: "users", messageRequest: { case: "listServices", value: "*" } },
    ]);
    expect(response?.validHost).toBe("users");
    expect(response?.originalRequest?.messageRequest).toEqual({ case: "listServices", value: "*" });
    expect(response?.messageResponse.case).toBe("listServicesResponse");
    const names =
      response?.messageResponse.case === "listServicesResponse"
        ? response.messageResponse.value.service.map((s) => s.name)
        : [];
    expect(names.sort()).toEqual(
      [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "meshwork.users.v1.UserService",
      ].sort(),
    );
  });

  it("indexes and serializes the files at the first request, once, not at registration (start-up)", async () => {
    let reads = 0;
    // The users file, counting reads of its FileDescriptorProto (what indexing and serializing read).
    const counted = new Proxy(file_meshwork_users_v1_users, {
      get(target, key, receiver) {
        if (key === "proto") reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    const transport = createRouterTransport((router) => {
      router.service(UserService, {});
      registerReflectionServices(router, [counted]);
    });
    expect(reads).toBe(0);
    const client = createClient(ServerReflection, transport);
    const ask = async () => {
      const names: string[] = [];
      for await (const r of client.serverReflectionInfo(
        stream([{ messageRequest: { case: "fileByFilename" as const, value: usersProto } }]),
      ))
        names.push(...fileNames(r));
      return names;
    };
    expect((await ask())[0]).toBe(usersProto);
    const afterFirst = reads;
    expect(afterFirst).toBeGreaterThan(0);
    expect((await ask())[0]).toBe(usersProto);
    // Answered from the index the first request built: only the answer's own look-up reads it.
    expect(reads - afterFirst).toBeLessThan(afterFirst);
  });

  it("answers file_by_filename with the file first, then each transitive dependency once", async () => {
    const [response] = await reflect([{ messageRequest: { case: "fileByFilename", value: usersProto } }]);
    const names = fileNames(response);
    expect(names[0]).toBe(usersProto);
    expect(names).toContain("buf/validate/validate.proto");
    expect(names).toContain("google/protobuf/timestamp.proto");
    expect(names).toContain("google/protobuf/descriptor.proto");
    expect(new Set(names).size).toBe(names.length);
  });

  it("answers file_containing_symbol for every kind of symbol", async () => {
    const cases: [string, string][] = [
      ["meshwork.users.v1.UserService", usersProto],
      ["meshwork.users.v1.UserService.GetUser", usersProto],
      ["meshwork.users.v1.User", usersProto],
      ["meshwork.users.v1.User.display_name", usersProto],
      ["google.protobuf.DescriptorProto.ExtensionRange", "google/protobuf/descriptor.proto"],
      ["grpc.health.v1.HealthCheckResponse.ServingStatus", "grpc/health/v1/health.proto"],
      ["grpc.health.v1.HealthCheckResponse.SERVING", "grpc/health/v1/health.proto"],
      ["buf.validate.field", "buf/validate/validate.proto"],
      ["grpc.reflection.v1.ServerReflection", "grpc/reflection/v1/reflection.proto"],
    ];
    const responses = await reflect(cases.map(([name]) => symbol(name)));
    expect(responses.map((r) => fileNames(r)[0])).toEqual(cases.map(([, file]) => file));
    expect(fileNames(responses[1])).toEqual(expect.arrayContaining(["buf/validate/validate.proto"]));
  });

  it("answers NOT_FOUND for unknown names and INVALID_ARGUMENT for empty requests, and keeps the stream open", async () => {
    const responses = await reflect([
      symbol("meshwork.users.v1.NoSuchThing"),
      { messageRequest: { case: "fileByFilename", value: "nope.proto" } },
      {},
      symbol("meshwork.users.v1.UserService.GetUser"),
    ]);
    expect(responses).toHaveLength(4);
    expect(responses[0]?.messageResponse).toMatchObject({
      case: "errorResponse",
      value: { errorCode: 5, errorMessage: expect.stringContaining("meshwork.users.v1.NoSuchThing") },
    });
    expect(responses[0]?.originalRequest?.messageRequest).toEqual({
      case: "fileContainingSymbol",
      value: "meshwork.users.v1.NoSuchThing",
    });
    expect(responses[1]?.messageResponse).toMatchObject({
      case: "errorResponse",
      value: { errorCode: 5, errorMessage: expect.stringContaining("nope.proto") },
    });
    expect(responses[2]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 3 } });
    expect(fileNames(responses[3])[0]).toBe(usersProto);
  });

  it("answers extension requests", async () => {
    const responses = await reflect([
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.FieldOptions", extensionNumber: 1159 },
        },
      },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "google.protobuf.FieldOptions" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "meshwork.users.v1.User" } },
      { messageRequest: { case: "allExtensionNumbersOfType", value: "no.such.Message" } },
      {
        messageRequest: {
          case: "fileContainingExtension",
          value: { containingType: "google.protobuf.FieldOptions", extensionNumber: 99999 },
        },
      },
    ]);
    expect(fileNames(responses[0])[0]).toBe("buf/validate/validate.proto");
    expect(responses[1]?.messageResponse.case).toBe("allExtensionNumbersResponse");
    if (responses[1]?.messageResponse.case === "allExtensionNumbersResponse") {
      expect(responses[1].messageResponse.value.baseTypeName).toBe("google.protobuf.FieldOptions");
      expect([...responses[1].messageResponse.value.extensionNumber].sort()).toEqual([1159, 1160]);
    }
    expect(responses[2]?.messageResponse).toMatchObject({
      case: "allExtensionNumbersResponse",
      value: { baseTypeName: "meshwork.users.v1.User", extensionNumber: [] },
    });
    expect(responses[3]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
    expect(responses[4]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
  });

  it("serves v1alpha with the same answers", async () => {
    const client = createClient(ServerReflectionV1alpha, createRouterTransport(routes));
    const requests = [
      create(ServerReflectionRequestV1alphaSchema, {
        host: "h",
        messageRequest: { case: "listServices", value: "" },
      }),
      create(ServerReflectionRequestV1alphaSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "meshwork.users.v1.UserService.GetUser" },
      }),
      create(ServerReflectionRequestV1alphaSchema, {
        messageRequest: { case: "fileContainingSymbol", value: "missing.Symbol" },
      }),
    ];
    const responses = [];
    for await (const response of client.serverReflectionInfo(stream(requests))) responses.push(response);
    expect(responses).toHaveLength(3);
    expect(responses[0]?.$typeName).toBe("grpc.reflection.v1alpha.ServerReflectionResponse");
    expect(responses[0]?.validHost).toBe("h");
    expect(responses[0]?.originalRequest).toEqual(requests[0]);
    expect(responses[0]?.messageResponse.case).toBe("listServicesResponse");
    const descriptors =
      responses[1]?.messageResponse.case === "fileDescriptorResponse"
        ? responses[1].messageResponse.value.fileDescriptorProto
        : [];
    expect(descriptors.map((b) => fromBinary(FileDescriptorProtoSchema, b).name)).toContain(usersProto);
    expect(responses[2]?.messageResponse).toMatchObject({ case: "errorResponse", value: { errorCode: 5 } });
  });
});

/** A v1 reflection response as @grpc/proto-loader decodes it with `keepCase` and `oneofs`. */
interface GrpcJsResponse {
  valid_host: string;
  message_response: string;
  list_services_response?: { service: { name: string }[] };
  file_descriptor_response?: { file_descriptor_proto: Uint8Array[] };
  error_response?: { error_code: number; error_message: string };
}

/** Sends `requests` on one ServerReflectionInfo stream with grpc-js and collects the responses. */
function grpcJsReflect(address: string, requests: readonly object[]): Promise<GrpcJsResponse[]> {
  const definition = protoLoader.loadSync(reflectionProto, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const method = definition["grpc.reflection.v1.ServerReflection"];
  const info = method && "ServerReflectionInfo" in method ? method.ServerReflectionInfo : undefined;
  if (!info) throw new Error("ServerReflectionInfo not in reflection.proto");
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve, reject) => {
    const responses: GrpcJsResponse[] = [];
    const call = client.makeBidiStreamRequest(
      info.path,
      info.requestSerialize,
      (bytes: Buffer) => info.responseDeserialize(bytes) as GrpcJsResponse,
    );
    call.on("data", (response: GrpcJsResponse) => responses.push(response));
    call.on("error", (error) => {
      client.close();
      reject(error);
    });
    call.on("end", () => {
      client.close();
      resolve(responses);
    });
    for (const request of requests) call.write(request);
    call.end();
  });
}

async function withServer(test: (port: number) => Promise<void>): Promise<void> {
  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await test((server.address() as AddressInfo).port);
  } finally {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const session of sessions) session.destroy();
    await closed;
  }
}

describe("registerReflectionServices over HTTP/2", () => {
  it("serves a grpc-js reflection client", async () => {
    await withServer(async (port) => {
      const responses = await grpcJsReflect(`127.0.0.1:${port}`, [
        { list_services: "*" },
        { file_containing_symbol: "meshwork.users.v1.UserService" },
        { file_containing_symbol: "meshwork.users.v1.Nope" },
      ]);
      expect(responses).toHaveLength(3);
      const [list, files, missing] = responses;
      expect(list?.message_response).toBe("list_services_response");
      expect(list?.list_services_response?.service.map((s) => s.name)).toEqual(
        expect.arrayContaining(["meshwork.users.v1.UserService", "grpc.reflection.v1.ServerReflection"]),
      );
      expect(files?.message_response).toBe("file_descriptor_response");
      const protos = (files?.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) =>
        fromBinary(FileDescriptorProtoSchema, bytes),
      );
      expect(protos[0]?.name).toBe(usersProto);
      const byName = new Map(protos.map((proto) => [proto.name, proto]));
      // createFileRegistry throws unless every transitive dependency was sent.
      const registry = createFileRegistry(protos[0]!, (name) => byName.get(name));
      const service = registry.getService("meshwork.users.v1.UserService");
      expect(service?.methods.map((m) => m.name)).toEqual(userServiceMethods);
      expect(missing?.message_response).toBe("error_response");
      expect(missing?.error_response?.error_code).toBe(5);
    });
  });

  it("serves buf curl --list-methods", { timeout: 60_000 }, async () => {
    await withServer(async (port) => {
      const { stdout } = await promisify(execFile)(
        "npx",
        [
          "buf",
          "curl",
          "--protocol",
          "grpc",
          "--http2-prior-knowledge",
          "--list-methods",
          // With server reflection, buf curl wants the base URL, not a service URL.
          `http://127.0.0.1:${port}`,
        ],
        { cwd: repoRoot, timeout: 55_000 },
      );
      const methods = stdout.trim().split("\n");
      expect(methods).toContain("meshwork.users.v1.UserService/GetUser");
      expect(methods.sort()).toEqual(
        [
          ...userServiceMethods.map((m) => `meshwork.users.v1.UserService/${m}`),
          "grpc.health.v1.Health/Check",
          "grpc.health.v1.Health/List",
          "grpc.health.v1.Health/Watch",
          "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
          "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ].sort(),
      );
    });
  });
});
