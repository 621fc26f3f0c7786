import {
  type DescField,
  type DescMessage,
  fromBinary,
  fromJson,
  type JsonObject,
  type JsonValue,
  ScalarType,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import type { HttpRoute } from "./http-rules.js";

/** A transcoding failure the client caused: 400 with the field named. */
export class TranscodeError extends Error {
  override readonly name = "TranscodeError";
}

const INT64 = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

/** Sets `value` (a path or query string) at a dotted field path of `target`, typed by the schema. */
function setPath(schema: DescMessage, target: JsonObject, path: string, value: string, source: string): void {
  const names = path.split(".");
  let desc: DescMessage = schema;
  let obj: JsonObject = target;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const field: DescField | undefined = desc.fields.find((f) => f.name === name || f.jsonName === name);
    if (!field) throw new TranscodeError(`${source} ${path}: ${desc.typeName} has no field ${name}`);
    const key = field.jsonName;
    if (i < names.length - 1) {
      if (field.fieldKind !== "message")
        throw new TranscodeError(`${source} ${path}: ${name} is not a message`);
      desc = field.message;
      const next = (obj[key] ?? {}) as JsonObject;
      obj[key] = next;
      obj = next;
      continue;
    }
    const scalar = field.fieldKind === "scalar" || field.fieldKind === "list" ? field.scalar : undefined;
    const enumField = field.fieldKind === "enum" || (field.fieldKind === "list" && field.listKind === "enum");
    let v: JsonValue = value;
    if (scalar === ScalarType.BOOL) {
      if (value !== "true" && value !== "false")
        throw new TranscodeError(`${source} ${path}: must be true or false`);
      v = value === "true";
    } else if (scalar === ScalarType.DOUBLE || scalar === ScalarType.FLOAT) {
      v = Number(value);
    } else if (!enumField && field.fieldKind !== "scalar" && field.fieldKind !== "list") {
      throw new TranscodeError(`${source} ${path}: ${name} cannot be set from a string`);
    }
    if (field.fieldKind === "list") {
      const list = (obj[key] ?? []) as JsonValue[];
      list.push(v);
      obj[key] = list;
    } else {
      obj[key] = v;
    }
  }
}

/**
 * The request message of a REST call, as Envoy's transcoder builds it: the body (all of it for
 * `body: "*"`, or one field), then the path variables, then (for the fields neither binds) the
 * query parameters. Returns its binary encoding; bad input throws {@link TranscodeError}.
 */
export function buildRequest(
  route: HttpRoute,
  vars: ReadonlyMap<string, string>,
  query: URLSearchParams,
  body: Buffer,
): Uint8Array {
  const schema = route.method.input;
  let json: JsonObject = {};
  if (route.body) {
    let parsed: JsonValue = {};
    if (body.length > 0) {
      try {
        parsed = JSON.parse(body.toString("utf8")) as JsonValue;
      } catch (err) {
        throw new TranscodeError(`the body is not JSON: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (route.body === "*") {
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
        throw new TranscodeError("the body must be a JSON object");
      }
      json = parsed;
    } else {
      const field = schema.fields.find((f) => f.name === route.body);
      if (!field) throw new TranscodeError(`the body field ${route.body} is not in ${schema.typeName}`);
      json[field.jsonName] = parsed;
    }
  } else if (body.length > 0) {
    throw new TranscodeError(`${route.verb} ${route.template} takes no body`);
  }
  for (const [field, value] of vars) setPath(schema, json, field, value, "path variable");
  if (route.body !== "*") {
    for (const [name, value] of query) {
      if (vars.has(name)) continue;
      setPath(schema, json, name, value, "query parameter");
    }
  }
  try {
    return toBinary(schema, fromJson(schema, json));
  } catch (err) {
    throw new TranscodeError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * Rewrites proto3 JSON 64-bit integers (strings) into JSON numbers where they fit in a double
 * exactly (the legacy API's shape: its clients read numbers). Larger ones stay strings.
 */
function int64AsNumbers(desc: DescMessage, json: JsonValue): JsonValue {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return json;
  if (desc.typeName.startsWith("google.protobuf.")) return json;
  const out: JsonObject = { ...json };
  for (const field of desc.fields) {
    const key = field.name;
    const v = out[key];
    if (v === undefined) continue;
    const num = (x: JsonValue) => {
      if (typeof x !== "string" || !/^-?\d+$/.test(x)) return x;
      const n = Number(x);
      return Number.isSafeInteger(n) ? n : x;
    };
    if (field.fieldKind === "scalar" && INT64.has(field.scalar)) out[key] = num(v);
    else if (
      field.fieldKind === "list" &&
      field.listKind === "scalar" &&
      INT64.has(field.scalar) &&
      Array.isArray(v)
    )
      out[key] = v.map(num);
    else if (field.fieldKind === "message") out[key] = int64AsNumbers(field.message, v);
    else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(v))
      out[key] = v.map((item) => int64AsNumbers(field.message, item));
  }
  return out;
}

/**
 * The response body of a REST call: the response message (or its `response_body` field) in
 * proto3 JSON with the proto field names and every field present (Envoy's
 * `preserve_proto_field_names` and `always_print_primitive_fields`), 64-bit integers as numbers.
 */
export function printResponse(route: HttpRoute, bytes: Uint8Array): JsonValue {
  const schema = route.method.output;
  const message = fromBinary(schema, bytes);
  const options = { useProtoFieldName: true, alwaysEmitImplicit: true } as const;
  if (!route.responseBody) return int64AsNumbers(schema, toJson(schema, message, options));
  const field = schema.fields.find((f) => f.name === route.responseBody);
  if (field?.fieldKind !== "message") return int64AsNumbers(schema, toJson(schema, message, options));
  const value = (message as unknown as Record<string, unknown>)[field.localName];
  if (value === undefined) return null;
  return int64AsNumbers(field.message, toJson(field.message, value as never, options));
}

/** gRPC code -> HTTP status, as google.rpc.Code documents it and Envoy's transcoder maps it. */
export const HTTP_STATUS_OF: Record<Code, number> = {
  [Code.Canceled]: 499,
  [Code.Unknown]: 500,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 400,
  [Code.Aborted]: 409,
  [Code.OutOfRange]: 400,
  [Code.Unimplemented]: 501,
  [Code.Internal]: 500,
  [Code.Unavailable]: 503,
  [Code.DataLoss]: 500,
  [Code.Unauthenticated]: 401,
};

/** A REST error body: `{"error": "<code>", "message": "..."}` (the legacy API's shape). */
export function restError(code: Code, message: string): { status: number; body: JsonObject } {
  const name = Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  return { status: HTTP_STATUS_OF[code], body: { error: name, message } };
}

/** The Connect unary error body of an upstream answer, as a REST error. */
export function restErrorOf(httpStatus: number, body: Buffer): { status: number; body: JsonObject } {
  try {
    const parsed = JSON.parse(body.toString("utf8")) as { code?: string; message?: string };
    const code = parsed.code ? codeFromString(parsed.code) : undefined;
    if (code !== undefined) return restError(code, parsed.message ?? "");
  } catch {
    // not a Connect error body
  }
  return restError(
    httpStatus === 503 ? Code.Unavailable : Code.Unknown,
    `upstream answered HTTP ${httpStatus}`,
  );
}
