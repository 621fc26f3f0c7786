import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/**
 * Loads `.proto` files (paths relative to `proto/` or `third_party/proto/`) with
 * `@grpc/proto-loader` and returns the grpc-js package object. Tests use it as an independent
 * gRPC client: its framing is grpc-js's and its serialization is protobufjs's, nothing of ours.
 * Field names are kept as written in the proto (`page_size`), enums come back as strings.
 */
export function loadGrpcJsPackage(...files: string[]): grpc.GrpcObject {
  const definition = protoLoader.loadSync(files, {
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [`${root}proto`, `${root}third_party/proto`],
  });
  return grpc.loadPackageDefinition(definition);
}

/** Looks up a client constructor such as `meshwork.users.v1.UserService` in a loaded package. */
export function grpcJsClient(pkg: grpc.GrpcObject, typeName: string, address: string): grpc.Client {
  let node: unknown = pkg;
  for (const part of typeName.split(".")) node = (node as Record<string, unknown>)[part];
  const ctor = node as grpc.ServiceClientConstructor;
  return new ctor(address, grpc.credentials.createInsecure());
}

/** Calls a unary method of a grpc-js client and resolves with the response or rejects with the ServiceError. */
export function grpcJsUnary<T = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  request: Record<string, unknown>,
  options: { deadlineMs?: number; metadata?: Record<string, string> } = {},
): Promise<T> {
  const metadata = new grpc.Metadata();
  for (const [k, v] of Object.entries(options.metadata ?? {})) metadata.set(k, v);
  const callOptions: grpc.CallOptions = {};
  if (options.deadlineMs !== undefined) callOptions.deadline = Date.now() + options.deadlineMs;
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...a: unknown[]) => void>)[method];
    if (!fn) throw new Error(`no method ${method} on client`);
    fn.call(client, request, metadata, callOptions, (err: grpc.ServiceError | null, res: T) =>
      err ? reject(err) : resolve(res),
    );
  });
}

export { grpc };
