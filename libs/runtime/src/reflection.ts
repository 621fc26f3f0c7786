import { type DescExtension, type DescFile, type DescMessage, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import { file_grpc_health_v1_health } from "@meshwork/contracts/grpc/health/v1/health";
import {
  file_grpc_reflection_v1_reflection,
  ServerReflection as ServerReflectionV1,
} from "@meshwork/contracts/grpc/reflection/v1/reflection";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
} from "@meshwork/contracts/grpc/reflection/v1alpha/reflection";

/**
 * A reflection request of either protocol version, reduced to what the answer depends on. The
 * v1 and v1alpha messages are wire-identical and differ only in their type names, so both
 * generated request types are assignable to this shape.
 */
type ReflectionQuery =
  | { case: "fileByFilename"; value: string }
  | { case: "fileContainingSymbol"; value: string }
  | { case: "fileContainingExtension"; value: { containingType: string; extensionNumber: number } }
  | { case: "allExtensionNumbersOfType"; value: string }
  | { case: "listServices"; value: string }
  | { case: undefined; value?: undefined };

/**
 * The `message_response` oneof of either protocol version, as plain init data: it initialises
 * the v1 and the v1alpha response alike.
 */
type ReflectionAnswer =
  | { case: "fileDescriptorResponse"; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: "allExtensionNumbersResponse"; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: "listServicesResponse"; value: { service: { name: string }[] } }
  | { case: "errorResponse"; value: { errorCode: number; errorMessage: string } };

/** Everything the reflection service answers from, computed once when it is registered. */
interface ReflectionIndex {
  /** Full names of the services described, in registration order. */
  readonly services: readonly string[];
  /** Every file by its `.proto` name, transitive dependencies included. */
  readonly files: ReadonlyMap<string, DescFile>;
  /** The file declaring each symbol (message, enum, enum value, field, oneof, service, method, extension). */
  readonly symbols: ReadonlyMap<string, DescFile>;
  /** Full names of every message, nested ones included. */
  readonly messages: ReadonlySet<string>;
  /** Known extensions of each message, by the message's full name. */
  readonly extensions: ReadonlyMap<string, readonly DescExtension[]>;
  /** Serialized FileDescriptorProtos of each file followed by its transitive dependencies. */
  readonly closures: ReadonlyMap<string, readonly Uint8Array[]>;
}

/** The `.proto` file name (`DescFile.name` lacks the suffix). */
function fileName(file: DescFile): string {
  return file.proto.name;
}

function indexFiles(roots: readonly DescFile[]): ReflectionIndex {
  const files = new Map<string, DescFile>();
  const symbols = new Map<string, DescFile>();
  const extensions = new Map<string, DescExtension[]>();
  const services: string[] = [];
  const messages = new Set<string>();

  const addSymbol = (name: string, file: DescFile): void => {
    if (!symbols.has(name)) symbols.set(name, file);
  };
  const addExtension = (ext: DescExtension, file: DescFile): void => {
    addSymbol(ext.typeName, file);
    const list = extensions.get(ext.extendee.typeName) ?? [];
    if (!list.some((e) => e.number === ext.number)) list.push(ext);
    extensions.set(ext.extendee.typeName, list);
  };
  const addEnums = (file: DescFile, enums: DescFile["enums"], scope: string): void => {
    for (const e of enums) {
      addSymbol(e.typeName, file);
      for (const v of e.values) {
        // Protobuf scopes enum values beside their enum (`pkg.VALUE`); some clients ask for
        // `pkg.Enum.VALUE`, so both resolve.
        addSymbol(scope ? `${scope}.${v.name}` : v.name, file);
        addSymbol(`${e.typeName}.${v.name}`, file);
      }
    }
  };
  const addMessage = (file: DescFile, message: DescMessage): void => {
    addSymbol(message.typeName, file);
    messages.add(message.typeName);
    for (const f of message.fields) addSymbol(`${message.typeName}.${f.name}`, file);
    for (const o of message.oneofs) addSymbol(`${message.typeName}.${o.name}`, file);
    addEnums(file, message.nestedEnums, message.typeName);
    for (const ext of message.nestedExtensions) addExtension(ext, file);
    for (const nested of message.nestedMessages) addMessage(file, nested);
  };
  const addFile = (file: DescFile): void => {
    // First file of a name wins: two copies of a well-known file describe the same thing.
    if (files.has(fileName(file))) return;
    files.set(fileName(file), file);
    const pkg = file.proto.package;
    for (const m of file.messages) addMessage(file, m);
    addEnums(file, file.enums, pkg);
    for (const ext of file.extensions) addExtension(ext, file);
    for (const s of file.services) {
      addSymbol(s.typeName, file);
      for (const m of s.methods) addSymbol(`${s.typeName}.${m.name}`, file);
    }
    for (const dep of file.dependencies) addFile(dep);
  };

  for (const root of roots) {
    addFile(root);
    for (const s of root.services) if (!services.includes(s.typeName)) services.push(s.typeName);
  }

  const serialized = new Map<string, Uint8Array>();
  for (const [name, file] of files) serialized.set(name, toBinary(FileDescriptorProtoSchema, file.proto));

  const closures = new Map<string, Uint8Array[]>();
  for (const [name, file] of files) {
    // The requested file first, then its dependencies breadth-first, each once.
    const seen = new Set<string>([name]);
    const queue: DescFile[] = [file];
    const closure: Uint8Array[] = [];
    for (let current = queue.shift(); current; current = queue.shift()) {
      closure.push(serialized.get(fileName(current))!);
      for (const dep of current.dependencies) {
        if (seen.has(fileName(dep))) continue;
        seen.add(fileName(dep));
        queue.push(files.get(fileName(dep)) ?? dep);
      }
    }
    closures.set(name, closure);
  }

  return { services, files, symbols, messages, extensions, closures };
}

function notFound(message: string): ReflectionAnswer {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

function descriptors(index: ReflectionIndex, file: DescFile): ReflectionAnswer {
  return {
    case: "fileDescriptorResponse",
    value: { fileDescriptorProto: [...(index.closures.get(fileName(file)) ?? [])] },
  };
}

function answerFrom(index: ReflectionIndex, query: ReflectionQuery): ReflectionAnswer {
  switch (query.case) {
    case "listServices":
      return { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } };
    case "fileByFilename": {
      const file = index.files.get(query.value);
      return file ? descriptors(index, file) : notFound(`file not found: ${query.value}`);
    }
    case "fileContainingSymbol": {
      const file = index.symbols.get(query.value);
      return file ? descriptors(index, file) : notFound(`symbol not found: ${query.value}`);
    }
    case "fileContainingExtension": {
      const { containingType, extensionNumber } = query.value;
      const ext = index.extensions.get(containingType)?.find((e) => e.number === extensionNumber);
      return ext
        ? descriptors(index, ext.file)
        : notFound(`extension not found: ${extensionNumber} of ${containingType}`);
    }
    case "allExtensionNumbersOfType": {
      if (!index.messages.has(query.value)) {
        return notFound(`message type not found: ${query.value}`);
      }
      const numbers = (index.extensions.get(query.value) ?? []).map((e) => e.number);
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: query.value, extensionNumber: numbers },
      };
    }
    default:
      return {
        case: "errorResponse",
        value: { errorCode: Code.InvalidArgument, errorMessage: "no message_request set in the request" },
      };
  }
}

/**
 * Registers `grpc.reflection.v1.ServerReflection` and `grpc.reflection.v1alpha.ServerReflection`
 * on `router`, so that grpcurl, `buf curl`, Postman and grpc-js reflection clients can discover
 * the service without its `.proto` files. Both versions share one implementation and behave as
 * the reference grpc-go and grpc-js servers do.
 *
 * What callers must know:
 * - `files` are the service's own contract files (e.g. `file_meshwork_users_v1_users`). The
 *   reflection files and the health file are always added, because clients such as `buf curl`
 *   ask the reflection service to describe itself; pass them again and nothing is duplicated.
 * - Only services declared in these files are listed by `list_services`; pass the file of every
 *   service the router serves, or clients will not see it. Their transitive dependencies are
 *   described (by file name and by symbol) but their services are not listed.
 * - The files are indexed and serialized once, at the first reflection request, not per request
 *   and not at registration: what reflection describes is fixed by the files given here and does
 *   not follow services added to the router later. Not at registration because every service
 *   registers at start-up and few are ever asked: serializing every FileDescriptorProto cost
 *   ~60 ms of each service's start (users, `--cpu-prof`).
 * - Each answer carries the requested file's FileDescriptorProto first, followed by every
 *   transitive dependency exactly once. Unknown names get an `error_response` with code
 *   NOT_FOUND (5) and a request without a `message_request` one with INVALID_ARGUMENT (3); in
 *   both cases the stream stays open for further requests.
 */
export function registerReflectionServices(router: ConnectRouter, files: readonly DescFile[]): void {
  const roots = [
    ...files,
    file_grpc_reflection_v1_reflection,
    file_grpc_reflection_v1alpha_reflection,
    file_grpc_health_v1_health,
  ];
  let indexed: ReflectionIndex | undefined;
  const answer = (query: ReflectionQuery): ReflectionAnswer => {
    indexed ??= indexFiles(roots);
    return answerFrom(indexed, query);
  };
  router.service(ServerReflectionV1, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield {
          validHost: request.host,
          originalRequest: request,
          messageResponse: answer(request.messageRequest),
        };
      }
    },
  });
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        yield {
          validHost: request.host,
          originalRequest: request,
          messageResponse: answer(request.messageRequest),
        };
      }
    },
  });
}
