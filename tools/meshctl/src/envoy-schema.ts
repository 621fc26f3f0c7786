import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import protobuf from "protobufjs";

/**
 * Checks an Envoy config (as parsed YAML/JSON) against Envoy's own v3 API protos, strictly: an
 * unknown field anywhere (also inside `typed_config` of any `@type`) is an error, as are wrong
 * value kinds, unknown enum names, unknown `@type`s and two members of one oneof. The protos are
 * the ones `@grpc/grpc-js-xds` ships (Envoy's data-plane-api, xds, googleapis,
 * protoc-gen-validate).
 */
export class EnvoySchema {
  readonly #root: protobuf.Root;

  private constructor(root: protobuf.Root) {
    this.#root = root;
  }

  /** Loads the bootstrap and the extension protos the config may name in `@type`. */
  static load(extensions: readonly string[]): EnvoySchema {
    const require = createRequire(import.meta.url);
    const deps = join(dirname(require.resolve("@grpc/grpc-js-xds/package.json")), "deps");
    const includes = ["envoy-api", "xds", "googleapis", "protoc-gen-validate"].map((d) => join(deps, d));
    const protobufDir = dirname(require.resolve("protobufjs/package.json"));
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => {
      for (const dir of includes) {
        const p = join(dir, target);
        if (existsSync(p)) return p;
      }
      const own = join(protobufDir, target);
      return existsSync(own) ? own : target;
    };
    root.loadSync(["envoy/config/bootstrap/v3/bootstrap.proto", ...extensions], { keepCase: true });
    root.resolveAll();
    return new EnvoySchema(root);
  }

  /** Every problem found, as `path: message`; empty when the config is valid. */
  validate(config: unknown, typeName = "envoy.config.bootstrap.v3.Bootstrap"): string[] {
    const problems: string[] = [];
    this.#message(config, this.#root.lookupType(typeName), "$", problems);
    return problems;
  }

  #message(value: unknown, type: protobuf.Type, path: string, problems: string[]): void {
    switch (type.fullName) {
      case ".google.protobuf.Any": {
        if (!isObject(value) || typeof value["@type"] !== "string") {
          problems.push(`${path}: an Any needs an "@type"`);
          return;
        }
        const url = value["@type"];
        const name = url.slice(url.lastIndexOf("/") + 1);
        let inner: protobuf.Type;
        try {
          inner = this.#root.lookupType(name);
        } catch {
          problems.push(`${path}: unknown @type ${url}`);
          return;
        }
        const { "@type": _, ...rest } = value;
        this.#message(rest, inner, `${path}<${name}>`, problems);
        return;
      }
      case ".google.protobuf.Duration":
        if (typeof value !== "string" || !/^-?\d+(\.\d{1,9})?s$/.test(value)) {
          problems.push(`${path}: a Duration is a string like "1.5s", got ${JSON.stringify(value)}`);
        }
        return;
      case ".google.protobuf.Struct":
      case ".google.protobuf.Value":
      case ".google.protobuf.ListValue":
        return;
      case ".google.protobuf.Empty":
        if (!isObject(value) || Object.keys(value).length > 0) problems.push(`${path}: must be {}`);
        return;
    }
    if (type.fullName.startsWith(".google.protobuf.") && type.fullName.endsWith("Value")) {
      // Wrappers are written as their bare value.
      const field = type.fields.value;
      if (field) this.#scalar(value, field, path, problems);
      return;
    }
    if (!isObject(value)) {
      problems.push(
        `${path}: expected an object for ${type.fullName.slice(1)}, got ${JSON.stringify(value)}`,
      );
      return;
    }
    const byJson = new Map<string, protobuf.Field>();
    for (const f of type.fieldsArray) {
      byJson.set(f.name, f);
      byJson.set(jsonName(f.name), f);
    }
    const oneofSeen = new Map<string, string>();
    for (const [key, v] of Object.entries(value)) {
      const field = byJson.get(key);
      const at = `${path}.${key}`;
      if (!field) {
        problems.push(`${at}: unknown field of ${type.fullName.slice(1)}`);
        continue;
      }
      if (field.partOf) {
        const other = oneofSeen.get(field.partOf.name);
        if (other) problems.push(`${at}: oneof ${field.partOf.name} already set by ${other}`);
        oneofSeen.set(field.partOf.name, key);
      }
      if (field instanceof protobuf.MapField) {
        if (!isObject(v)) problems.push(`${at}: expected a map`);
        else for (const [k, item] of Object.entries(v)) this.#value(item, field, `${at}[${k}]`, problems);
      } else if (field.repeated) {
        if (!Array.isArray(v)) problems.push(`${at}: expected a list`);
        else for (const [i, item] of v.entries()) this.#value(item, field, `${at}[${i}]`, problems);
      } else {
        this.#value(v, field, at, problems);
      }
    }
  }

  #value(value: unknown, field: protobuf.Field, path: string, problems: string[]): void {
    const resolved = field.resolvedType;
    if (resolved instanceof protobuf.Type) this.#message(value, resolved, path, problems);
    else if (resolved instanceof protobuf.Enum) {
      if (typeof value === "string" ? !(value in resolved.values) : typeof value !== "number") {
        problems.push(`${path}: ${JSON.stringify(value)} is not a value of ${resolved.fullName.slice(1)}`);
      }
    } else this.#scalar(value, field, path, problems);
  }

  #scalar(value: unknown, field: protobuf.Field, path: string, problems: string[]): void {
    const ok = (() => {
      switch (field.type) {
        case "string":
        case "bytes":
          return typeof value === "string";
        case "bool":
          return typeof value === "boolean";
        case "double":
        case "float":
          return typeof value === "number";
        case "int64":
        case "uint64":
        case "sint64":
        case "fixed64":
        case "sfixed64":
          return Number.isInteger(value) || (typeof value === "string" && /^-?\d+$/.test(value));
        default:
          return Number.isInteger(value) && (!field.type.startsWith("u") || (value as number) >= 0);
      }
    })();
    if (!ok) problems.push(`${path}: ${JSON.stringify(value)} is not a ${field.type}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function jsonName(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** The extension protos a config rendered by `renderEnvoyConfig` names in `@type`. */
export const ENVOY_EXTENSION_PROTOS = [
  "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
  "envoy/extensions/filters/http/router/v3/router.proto",
  "envoy/extensions/filters/http/jwt_authn/v3/config.proto",
  "envoy/extensions/filters/http/rbac/v3/rbac.proto",
  "envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto",
  "envoy/extensions/filters/http/cors/v3/cors.proto",
  "envoy/extensions/filters/http/grpc_web/v3/grpc_web.proto",
  "envoy/extensions/filters/http/local_ratelimit/v3/local_rate_limit.proto",
  "envoy/extensions/filters/http/header_mutation/v3/header_mutation.proto",
  "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
  "envoy/extensions/access_loggers/stream/v3/stream.proto",
  "envoy/extensions/retry/host/previous_hosts/v3/previous_hosts.proto",
  "envoy/extensions/filters/http/grpc_json_transcoder/v3/transcoder.proto",
  "envoy/extensions/http/early_header_mutation/header_mutation/v3/header_mutation.proto",
];
