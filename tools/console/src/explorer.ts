import { randomBytes, randomUUID } from "node:crypto";
import {
  create,
  createFileRegistry,
  type DescField,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  fromJson,
  getExtension,
  hasExtension,
  type JsonValue,
  type Registry,
  toJson,
} from "@bufbuild/protobuf";
import {
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  file_google_protobuf_descriptor,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_field_mask,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  MethodOptions_IdempotencyLevel,
} from "@bufbuild/protobuf/wkt";
import { file_buf_validate_validate } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ServerReflection } from "@meshwork/contracts/grpc/reflection/v1/reflection";
import { Access_Level, access as accessExtension } from "@meshwork/contracts/meshwork/api/v1/access";
import {
  type DescribeApiResponse,
  DescribeApiResponseSchema,
  type InvokeRequest,
  type InvokeResponse,
  InvokeResponseSchema,
  type InvokeStreamRequest,
  type Method,
  type Schema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import { type ApiComments, loadApiComments } from "./api-comments.js";

/** Services the explorer leaves out: the mesh's plumbing, not its API. */
const HIDDEN = new Set([
  "grpc.health.v1.Health",
  "grpc.reflection.v1.ServerReflection",
  "grpc.reflection.v1alpha.ServerReflection",
]);

/** What a call from the page says: InvokeRequest or InvokeStreamRequest. */
export type CallRequest = Omit<InvokeRequest | InvokeStreamRequest, "$typeName" | "$unknown">;

/** Files a reflection answer may leave out because every Protobuf runtime has them. */
const KNOWN_FILES = new Map<string, DescFile>(
  [
    file_buf_validate_validate,
    file_google_protobuf_descriptor,
    file_google_protobuf_duration,
    file_google_protobuf_empty,
    file_google_protobuf_field_mask,
    file_google_protobuf_struct,
    file_google_protobuf_timestamp,
    file_google_protobuf_wrappers,
  ].map((f) => [f.proto.name, f]),
);

/**
 * The files with each one after its dependencies (what a registry is built from). A file a
 * server left out because every Protobuf runtime has it (well-known types, protovalidate's
 * rules) comes from this build.
 */
export function inDependencyOrder(files: ReadonlyMap<string, FileDescriptorProto>): FileDescriptorProto[] {
  const out: FileDescriptorProto[] = [];
  const done = new Set<string>();
  const visit = (name: string, from: string) => {
    if (done.has(name)) return;
    done.add(name);
    const f = files.get(name) ?? KNOWN_FILES.get(name)?.proto;
    if (!f) throw new Error(`reflection did not describe ${name}, imported by ${from}`);
    for (const dep of f.dependency) visit(dep, name);
    out.push(f);
  };
  for (const name of files.keys()) visit(name, name);
  return out;
}

/**
 * The catalogue of `services` (as reflection described them): every method with its policy,
 * idempotency, template and comment, and the schema of every message they refer to, with the
 * comments of messages and fields from `comments`.
 */
export function describeServices(
  services: readonly DescService[],
  comments: ApiComments,
): DescribeApiResponse {
  const schemas = new Map<string, Schema>();
  const collect = (m: DescMessage) => {
    if (schemas.has(m.typeName)) return;
    schemas.set(m.typeName, {
      $typeName: "meshwork.console.v1.Schema",
      fullName: m.typeName,
      comment: comments[m.typeName] ?? "",
      fields: m.fields.map((f) => ({
        $typeName: "meshwork.console.v1.Field",
        name: f.name,
        jsonName: f.jsonName,
        type: fieldType(f),
        repeated: f.fieldKind === "list",
        map: f.fieldKind === "map",
        kind: fieldMessage(f) ? "message" : fieldEnumName(f) ? "enum" : "scalar",
        comment: comments[`${m.typeName}.${f.name}`] ?? "",
      })),
    });
    for (const f of m.fields) {
      const sub = fieldMessage(f);
      if (sub) collect(sub);
    }
  };
  const out = services.map((s) => ({
    fullName: s.typeName,
    methods: s.methods.map((m): Method => {
      collect(m.input);
      collect(m.output);
      return {
        $typeName: "meshwork.console.v1.Method",
        name: m.name,
        path: `/${s.typeName}/${m.name}`,
        inputType: m.input.typeName,
        outputType: m.output.typeName,
        serverStreaming: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
        clientStreaming: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
        access: accessOf(m),
        idempotency: MethodOptions_IdempotencyLevel[m.idempotency] ?? "IDEMPOTENCY_UNKNOWN",
        templateJson: JSON.stringify(template(m.input, 0), null, 2),
        comment: comments[`${s.typeName}.${m.name}`] ?? "",
      };
    }),
  }));
  return create(DescribeApiResponseSchema, { services: out, schemas: [...schemas.values()] });
}

/** What reflection described: the registry of every file and the services in it. */
interface Described {
  registry: Registry;
  services: DescService[];
}

/**
 * The API explorer's side of the console: reads the mesh's API through the gateway's server
 * reflection (so it shows what is deployed, not what this build was compiled with) and calls
 * methods through the gateway, as any client would, with the page's token.
 */
export class Explorer {
  readonly #transport: Transport;
  #described: Described | undefined;

  /**
   * `comments`: the contracts' comments by full name (reflection carries none); by default the
   * ones written at build time.
   */
  constructor(
    readonly gatewayUrl: string,
    private readonly comments: ApiComments = loadApiComments(),
  ) {
    this.#transport = createGrpcTransport({ baseUrl: gatewayUrl });
  }

  /** Lists services and fetches their files (with dependencies) over reflection v1. */
  async #reflect(): Promise<Described> {
    const client = createClient(ServerReflection, this.#transport);
    const queue: Array<{ messageRequest: { case: "listServices" | "fileContainingSymbol"; value: string } }> =
      [];
    const ask = async (requests: typeof queue) => {
      const answers = [];
      for await (const res of client.serverReflectionInfo(
        (async function* () {
          for (const r of requests) yield r;
        })(),
        { timeoutMs: 5_000 },
      )) {
        answers.push(res);
      }
      return answers;
    };
    const [listed] = await ask([{ messageRequest: { case: "listServices", value: "" } }]);
    if (listed?.messageResponse.case !== "listServicesResponse") {
      throw new Error("reflection answered no service list");
    }
    const names = listed.messageResponse.value.service.map((s) => s.name).filter((n) => !HIDDEN.has(n));
    const answers = await ask(
      names.map((n) => ({ messageRequest: { case: "fileContainingSymbol", value: n } })),
    );
    const files = new Map<string, FileDescriptorProto>();
    for (const a of answers) {
      if (a.messageResponse.case !== "fileDescriptorResponse") continue;
      for (const bytes of a.messageResponse.value.fileDescriptorProto) {
        const fdp = fromBinary(FileDescriptorProtoSchema, bytes);
        if (!files.has(fdp.name)) files.set(fdp.name, fdp);
      }
    }
    const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: inDependencyOrder(files) }));
    const services: DescService[] = [];
    for (const n of names) {
      const s = registry.getService(n);
      if (s) services.push(s);
    }
    return { registry, services };
  }

  /** The catalogue the page shows; `problem` says why it is empty when the gateway does not answer. */
  async describe(): Promise<DescribeApiResponse> {
    try {
      this.#described = await this.#reflect();
    } catch (err) {
      return create(DescribeApiResponseSchema, {
        problem: `server reflection through the gateway at ${this.gatewayUrl} failed: ${ConnectError.from(err).rawMessage}`,
      });
    }
    return describeServices(this.#described.services, this.comments);
  }

  async #method(service: string, method: string): Promise<{ desc: DescMethod; registry: Registry }> {
    this.#described ??= await this.#reflect().catch((err: unknown) => {
      throw new ConnectError(
        `server reflection through the gateway at ${this.gatewayUrl} failed: ${ConnectError.from(err).rawMessage}`,
        Code.Unavailable,
      );
    });
    const s = this.#described.registry.getService(service);
    const m = s?.methods.find((x) => x.name === method);
    if (!s || !m) {
      throw new ConnectError(`no method ${service}/${method} in the gateway's reflection`, Code.NotFound);
    }
    return { desc: m, registry: this.#described.registry };
  }

  /**
   * Parses the page's JSON against the method's input schema: a syntax error or a field the
   * schema refuses is an answer with INVALID_ARGUMENT naming the field, and nothing is sent.
   */
  #parse(desc: DescMethod, registry: Registry, json: string) {
    let value: JsonValue;
    try {
      value = JSON.parse(json.trim() === "" ? "{}" : json) as JsonValue;
    } catch (err) {
      return { error: refused(`the request is not JSON: ${(err as Error).message}`, "") };
    }
    try {
      return { message: fromJson(desc.input, value, { registry }) };
    } catch (err) {
      const text = (err as Error).message;
      const path = locateJsonError(desc.input, value, registry);
      return { error: refused(text, path ?? fieldOfDecodeError(text, desc.input)) };
    }
  }

  /** One unary call through the gateway; every outcome is an answer (the status is in it). */
  async invoke(req: CallRequest): Promise<InvokeResponse> {
    const { desc, registry } = await this.#method(req.service, req.method);
    if (desc.methodKind !== "unary") {
      throw new ConnectError(
        `${req.service}/${req.method} is ${desc.methodKind}: use InvokeStream`,
        Code.InvalidArgument,
      );
    }
    const parsed = this.#parse(desc, registry, req.requestJson);
    if (parsed.error) return parsed.error;
    const call = this.#call(req);
    const client = createClient(desc.parent, this.#transport) as unknown as Record<
      string,
      (input: unknown, options: object) => Promise<unknown>
    >;
    try {
      const res = await client[desc.localName]!(parsed.message, call.options);
      return call.finish(undefined, JSON.stringify(toJson(desc.output, res as never, { registry }), null, 2));
    } catch (err) {
      return call.finish(ConnectError.from(err), "");
    }
  }

  /** A server-streaming call: each message as it arrives, then the end. */
  async *invokeStream(
    req: CallRequest,
    signal: AbortSignal,
  ): AsyncGenerator<{ message?: string; end?: InvokeResponse }> {
    const { desc, registry } = await this.#method(req.service, req.method);
    if (desc.methodKind !== "server_streaming") {
      throw new ConnectError(
        `${req.service}/${req.method} is ${desc.methodKind}: use Invoke`,
        Code.InvalidArgument,
      );
    }
    const parsed = this.#parse(desc, registry, req.requestJson);
    if (parsed.error) {
      yield { end: parsed.error };
      return;
    }
    // A stream lives longer than a unary call: a minute unless the page says otherwise.
    const call = this.#call({ ...req, timeoutMs: req.timeoutMs > 0 ? req.timeoutMs : 60_000 }, signal);
    const client = createClient(desc.parent, this.#transport) as unknown as Record<
      string,
      (input: unknown, options: object) => AsyncIterable<unknown>
    >;
    try {
      for await (const m of client[desc.localName]!(parsed.message, call.options)) {
        yield { message: JSON.stringify(toJson(desc.output, m as never, { registry })) };
      }
      yield { end: call.finish(undefined, "") };
    } catch (err) {
      yield { end: call.finish(ConnectError.from(err), "") };
    }
  }

  /** Headers of a call (token, a traceparent the console chose) and the collection of its answer. */
  #call(req: CallRequest, signal?: AbortSignal) {
    const traceId = randomBytes(16).toString("hex");
    const headers: Record<string, string> = {
      traceparent: `00-${traceId}-${randomBytes(8).toString("hex")}-01`,
    };
    if (req.token) headers.authorization = `Bearer ${req.token}`;
    const got = { headers: [] as [string, string][], trailers: [] as [string, string][] };
    const started = performance.now();
    return {
      options: {
        headers,
        timeoutMs: req.timeoutMs > 0 ? req.timeoutMs : 15_000,
        signal,
        onHeader: (h: Headers) => {
          for (const [k, v] of h) got.headers.push([k, v]);
        },
        onTrailer: (t: Headers) => {
          for (const [k, v] of t) got.trailers.push([k, v]);
        },
      },
      finish: (err: ConnectError | undefined, body: string): InvokeResponse => {
        if (err && got.headers.length === 0 && got.trailers.length === 0) {
          for (const [k, v] of err.metadata) got.trailers.push([k, v]);
        }
        return create(InvokeResponseSchema, {
          code: codeName(err?.code),
          message: err?.rawMessage ?? "",
          field: err?.code === Code.InvalidArgument ? fieldOfViolation(err.rawMessage) : "",
          responseJson: body,
          headers: got.headers.map(([name, value]) => ({ name, value })),
          trailers: got.trailers.map(([name, value]) => ({ name, value })),
          traceId,
          durationMs: performance.now() - started,
          sent: true,
        });
      },
    };
  }
}

function refused(message: string, field: string): InvokeResponse {
  return create(InvokeResponseSchema, {
    code: "invalid_argument",
    message: field ? `${field}: ${message}` : message,
    field,
    sent: false,
  });
}

/** `invalid_argument`, `ok`, ...: the Connect protocol's names for codes. */
export function codeName(code: Code | undefined): string {
  if (code === undefined) return "ok";
  return (Code[code] ?? "unknown").replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}

/**
 * The field a protobuf-es JSON decode error is about: "cannot decode field pkg.Msg.items from
 * JSON: ..." names it; "key \"x\" is unknown" names an unknown key.
 */
export function fieldOfDecodeError(message: string, input: DescMessage): string {
  const field = /cannot decode field ([\w.]+) from JSON/.exec(message)?.[1];
  if (field) {
    const local = field.startsWith(`${input.typeName}.`) ? field.slice(input.typeName.length + 1) : field;
    return local;
  }
  const key = /key "([^"]+)" is unknown/.exec(message)?.[1];
  return key ?? "";
}

/**
 * The JSON path (`items[0].quantity`) of the first field of `value` that `message` refuses:
 * each field is decoded alone, and a refused message field is searched further down. Undefined
 * when no single field is at fault.
 */
export function locateJsonError(
  message: DescMessage,
  value: JsonValue,
  registry: Registry,
  prefix = "",
): string | undefined {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return undefined;
  if (WKT[message.typeName]) return undefined;
  for (const [key, v] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const field = message.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) return path;
    try {
      fromJson(message, { [key]: v } as JsonValue, { registry });
      continue;
    } catch {
      // this field is at fault: look for the exact spot below it
    }
    const sub = fieldMessage(field);
    if (sub && field.fieldKind === "list" && Array.isArray(v)) {
      for (const [i, item] of v.entries()) {
        try {
          fromJson(sub, item as JsonValue, { registry });
        } catch {
          return locateJsonError(sub, item as JsonValue, registry, `${path}[${i}]`) ?? `${path}[${i}]`;
        }
      }
    } else if (sub && field.fieldKind === "message") {
      return locateJsonError(sub, v as JsonValue, registry, path) ?? path;
    }
    return path;
  }
  return undefined;
}

/** The field a protovalidate message begins with (`items[0].quantity: value must be ...`). */
export function fieldOfViolation(message: string): string {
  return /^([A-Za-z_][\w.[\]"]*): /.exec(message)?.[1] ?? "";
}

function fieldMessage(f: DescField): DescMessage | undefined {
  if (f.fieldKind === "message") return f.message;
  if (f.fieldKind === "list" && f.listKind === "message") return f.message;
  if (f.fieldKind === "map" && f.mapKind === "message") return f.message;
  return undefined;
}

function fieldEnumName(f: DescField): string | undefined {
  if (f.fieldKind === "enum") return f.enum.typeName;
  if (f.fieldKind === "list" && f.listKind === "enum") return f.enum.typeName;
  if (f.fieldKind === "map" && f.mapKind === "enum") return f.enum.typeName;
  return undefined;
}

const SCALARS: Record<number, string> = {
  1: "double",
  2: "float",
  3: "int64",
  4: "uint64",
  5: "int32",
  6: "fixed64",
  7: "fixed32",
  8: "bool",
  9: "string",
  12: "bytes",
  13: "uint32",
  15: "sfixed32",
  16: "sfixed64",
  17: "sint32",
  18: "sint64",
};

function fieldType(f: DescField): string {
  const m = fieldMessage(f);
  if (m) return m.typeName;
  const e = fieldEnumName(f);
  if (e) return e;
  const scalar =
    f.fieldKind === "scalar" || (f.fieldKind === "list" && f.listKind === "scalar") ? f.scalar : undefined;
  if (f.fieldKind === "map")
    return `map<${SCALARS[f.mapKey] ?? "?"}, ${f.mapKind === "scalar" ? (SCALARS[f.scalar] ?? "?") : "?"}>`;
  return scalar !== undefined ? (SCALARS[scalar] ?? "scalar") : "?";
}

function accessOf(m: DescMethod): string {
  const options = m.proto.options;
  if (!options || !hasExtension(options, accessExtension)) return "none";
  const a = getExtension(options, accessExtension);
  switch (a.level) {
    case Access_Level.PUBLIC:
      return "public";
    case Access_Level.AUTHENTICATED:
      return "authenticated";
    case Access_Level.ROLE:
      return `role:${a.role}`;
    default:
      return "none";
  }
}

/** A typical JSON value of a field: ids get a fresh UUID, money a currency, enums their first real value. */
function scalarTemplate(f: DescField, scalar: number): JsonValue {
  if (scalar === 8) return false;
  if (scalar === 9) {
    if (/(^|_)(id|key)$/.test(f.name)) return randomUUID();
    if (f.name === "currency") return "EUR";
    if (f.name === "email") return "ada@example.com";
    return "";
  }
  if (scalar === 12) return "";
  return f.name === "quantity" || f.name === "page_size" ? 1 : 0;
}

const WKT: Record<string, () => JsonValue> = {
  "google.protobuf.Timestamp": () => new Date().toISOString(),
  "google.protobuf.Duration": () => "1s",
  "google.protobuf.Struct": () => ({}),
  "google.protobuf.Value": () => null,
};

/** A request template with every field of `m` (nested messages to three levels). */
export function template(m: DescMessage, depth: number): JsonValue {
  const out: Record<string, JsonValue> = {};
  for (const f of m.fields) {
    if (f.oneof && f.oneof.fields[0] !== f) continue; // one member of each oneof
    let v: JsonValue;
    const sub = fieldMessage(f);
    if (f.fieldKind === "map") {
      v = {};
    } else if (sub) {
      const wkt = WKT[sub.typeName];
      v = wkt ? wkt() : depth < 3 ? template(sub, depth + 1) : {};
    } else if (f.fieldKind === "enum" || (f.fieldKind === "list" && f.listKind === "enum")) {
      const values = f.enum.values;
      v = (values.find((x) => x.number !== 0) ?? values[0])?.name ?? 0;
    } else if (f.fieldKind === "scalar" || (f.fieldKind === "list" && f.listKind === "scalar")) {
      v = scalarTemplate(f, f.scalar);
    } else {
      v = null;
    }
    out[f.jsonName] = f.fieldKind === "list" ? [v] : v;
  }
  return out;
}
