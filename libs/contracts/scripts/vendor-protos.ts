/**
 * Vendors the third-party .proto files Meshwork's contracts import, from npm packages only
 * (no network, no BSR), into `third_party/proto/` at the repository root.
 *
 * - grpc/health/v1/health.proto       <- grpc-health-check (ships the file)
 * - grpc/reflection/v1{,alpha}/...    <- @grpc/reflection (ships the files)
 * - opentelemetry/proto/...            <- @elastic/mockotlpserver (ships opentelemetry-proto v1.4.0):
 *   OTLP, for the local trace receiver (@meshwork/tracestore)
 * - google/rpc/status.proto            <- @grpc/grpc-js-xds (ships googleapis): OTLP error bodies
 * - google/api/{http,annotations}.proto <- @grpc/grpc-js-xds (ships googleapis): the REST mapping
 *   (`google.api.http`) of the methods that replace the legacy monolith's endpoints
 * - buf/validate/validate.proto       <- @bufbuild/protovalidate, which ships no .proto file but
 *   embeds the file's descriptor; we print it back to .proto source. `--check` compiles the
 *   printed file with buf and verifies its descriptor equals the embedded one, so the printed
 *   file is exactly the contract the runtime validator reads.
 *
 * Run from the repository root: `tsx libs/contracts/scripts/vendor-protos.ts [--check]`.
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  clearField,
  clone,
  create,
  createRegistry,
  equals,
  fromBinary,
  getExtension,
  hasExtension,
  isFieldSet,
  toJson,
} from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  DescriptorProtoSchema,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FieldOptionsSchema,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import {
  file_buf_validate_validate,
  predefined,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

const root = process.cwd();
const out = join(root, "third_party/proto");
const require = createRequire(import.meta.url);

function pkgDir(name: string): string {
  return dirname(require.resolve(`${name}/package.json`));
}

const copies: Array<[string, string]> = [
  [join(pkgDir("grpc-health-check"), "proto/health/v1/health.proto"), "grpc/health/v1/health.proto"],
  [
    join(pkgDir("@grpc/reflection"), "build/proto/grpc/reflection/v1/reflection.proto"),
    "grpc/reflection/v1/reflection.proto",
  ],
  [
    join(pkgDir("@grpc/reflection"), "build/proto/grpc/reflection/v1alpha/reflection.proto"),
    "grpc/reflection/v1alpha/reflection.proto",
  ],
  ...[
    "common/v1/common.proto",
    "resource/v1/resource.proto",
    "trace/v1/trace.proto",
    "logs/v1/logs.proto",
    "metrics/v1/metrics.proto",
    "collector/trace/v1/trace_service.proto",
    "collector/logs/v1/logs_service.proto",
    "collector/metrics/v1/metrics_service.proto",
  ].map((f): [string, string] => [
    join(pkgDir("@elastic/mockotlpserver"), "opentelemetry/proto", f),
    `opentelemetry/proto/${f}`,
  ]),
  [join(pkgDir("@grpc/grpc-js-xds"), "deps/googleapis/google/rpc/status.proto"), "google/rpc/status.proto"],
  // Envoy's external authorization API and what it imports, for the edge's ext_authz server
  // (apps/gateway/src/ext-authz.ts): Envoy asks it to authorize each call and to sign the caller.
  ...[
    ["envoy-api", "envoy/service/auth/v3/external_auth.proto"],
    ["envoy-api", "envoy/service/auth/v3/attribute_context.proto"],
    ["envoy-api", "envoy/annotations/deprecation.proto"],
    ["envoy-api", "envoy/config/core/v3/address.proto"],
    ["envoy-api", "envoy/config/core/v3/backoff.proto"],
    ["envoy-api", "envoy/config/core/v3/base.proto"],
    ["envoy-api", "envoy/config/core/v3/extension.proto"],
    ["envoy-api", "envoy/config/core/v3/http_uri.proto"],
    ["envoy-api", "envoy/config/core/v3/socket_option.proto"],
    ["envoy-api", "envoy/type/v3/http_status.proto"],
    ["envoy-api", "envoy/type/v3/percent.proto"],
    ["envoy-api", "envoy/type/v3/semantic_version.proto"],
    ["xds", "udpa/annotations/migrate.proto"],
    ["xds", "udpa/annotations/status.proto"],
    ["xds", "udpa/annotations/versioning.proto"],
    ["xds", "xds/annotations/v3/status.proto"],
    ["xds", "xds/core/v3/context_params.proto"],
    ["protoc-gen-validate", "validate/validate.proto"],
  ].map(([dep, f]): [string, string] => [
    join(pkgDir("@grpc/grpc-js-xds"), "deps", dep as string, f as string),
    f as string,
  ]),
  [join(pkgDir("@grpc/grpc-js-xds"), "deps/googleapis/google/api/http.proto"), "google/api/http.proto"],
  [
    join(pkgDir("@grpc/grpc-js-xds"), "deps/googleapis/google/api/annotations.proto"),
    "google/api/annotations.proto",
  ],
];

// ---- a printer for the subset of proto2 that validate.proto uses ----------------------------

const scalarNames: Partial<Record<FieldDescriptorProto_Type, string>> = {
  [FieldDescriptorProto_Type.DOUBLE]: "double",
  [FieldDescriptorProto_Type.FLOAT]: "float",
  [FieldDescriptorProto_Type.INT64]: "int64",
  [FieldDescriptorProto_Type.UINT64]: "uint64",
  [FieldDescriptorProto_Type.INT32]: "int32",
  [FieldDescriptorProto_Type.FIXED64]: "fixed64",
  [FieldDescriptorProto_Type.FIXED32]: "fixed32",
  [FieldDescriptorProto_Type.BOOL]: "bool",
  [FieldDescriptorProto_Type.STRING]: "string",
  [FieldDescriptorProto_Type.BYTES]: "bytes",
  [FieldDescriptorProto_Type.UINT32]: "uint32",
  [FieldDescriptorProto_Type.SFIXED32]: "sfixed32",
  [FieldDescriptorProto_Type.SFIXED64]: "sfixed64",
  [FieldDescriptorProto_Type.SINT32]: "sint32",
  [FieldDescriptorProto_Type.SINT64]: "sint64",
};

function quote(s: string): string {
  let r = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0) ?? 0;
    if (ch === "\\") r += "\\\\";
    else if (ch === '"') r += '\\"';
    else if (ch === "\n") r += "\\n";
    else if (ch === "\r") r += "\\r";
    else if (ch === "\t") r += "\\t";
    else if (c < 0x20) r += `\\x${c.toString(16).padStart(2, "0")}`;
    else r += ch;
  }
  return `${r}"`;
}

function typeName(f: FieldDescriptorProto): string {
  const scalar = scalarNames[f.type];
  if (scalar) return scalar;
  if (f.type === FieldDescriptorProto_Type.GROUP) throw new Error(`group field ${f.name} unsupported`);
  return f.typeName; // fully qualified, leading dot: always unambiguous
}

function fieldOptions(f: FieldDescriptorProto): string {
  if (!f.options) return "";
  const parts: string[] = [];
  const rest = clone(FieldOptionsSchema, f.options);
  if (isFieldSet(f.options, FieldOptionsSchema.field.packed)) {
    parts.push(`packed = ${f.options.packed}`);
  }
  if (isFieldSet(f.options, FieldOptionsSchema.field.deprecated)) {
    parts.push(`deprecated = ${f.options.deprecated}`);
  }
  if (hasExtension(f.options, predefined)) {
    for (const rule of getExtension(f.options, predefined).cel) {
      const body = [
        rule.id ? `id: ${quote(rule.id)}` : "",
        rule.message ? `message: ${quote(rule.message)}` : "",
        rule.expression ? `expression: ${quote(rule.expression)}` : "",
      ].filter(Boolean);
      parts.push(`(predefined).cel = {\n      ${body.join("\n      ")}\n    }`);
    }
  }
  // Anything else in the options would be silently lost: refuse instead.
  rest.$unknown = (rest.$unknown ?? []).filter((u) => u.no !== predefined.number);
  clearField(rest, FieldOptionsSchema.field.packed);
  clearField(rest, FieldOptionsSchema.field.deprecated);
  if (!equals(FieldOptionsSchema, rest, create(FieldOptionsSchema)) || rest.$unknown.length > 0) {
    throw new Error(`field ${f.name}: options the printer does not know`);
  }
  return parts.length ? ` [\n    ${parts.join(",\n    ")}\n  ]` : "";
}

function printField(f: FieldDescriptorProto, indent: string, inOneof: boolean): string {
  const label = inOneof
    ? ""
    : f.label === FieldDescriptorProto_Label.REPEATED
      ? "repeated "
      : f.label === FieldDescriptorProto_Label.REQUIRED
        ? "required "
        : "optional ";
  const def = isFieldSet(f, FieldDescriptorProtoSchema.field.defaultValue)
    ? ` [default = ${f.type === FieldDescriptorProto_Type.STRING ? quote(f.defaultValue) : f.defaultValue}]`
    : "";
  const opts = fieldOptions(f).replaceAll("\n", `\n${indent}`);
  if (def && opts) throw new Error(`field ${f.name}: default and options together unsupported`);
  return `${indent}${label}${typeName(f)} ${f.name} = ${f.number}${def}${opts};\n`;
}

function printEnum(e: EnumDescriptorProto, indent: string): string {
  let s = `${indent}enum ${e.name} {\n`;
  for (const r of e.reservedRange) {
    s += `${indent}  reserved ${r.start === r.end ? r.start : `${r.start} to ${r.end}`};\n`;
  }
  if (e.reservedName.length) s += `${indent}  reserved ${e.reservedName.map(quote).join(", ")};\n`;
  for (const v of e.value) s += `${indent}  ${v.name} = ${v.number};\n`;
  return `${s}${indent}}\n`;
}

function printMessage(m: DescriptorProto, indent: string): string {
  let s = `${indent}message ${m.name} {\n`;
  const inner = `${indent}  `;
  for (const r of m.reservedRange) {
    s += `${inner}reserved ${r.end - 1 === r.start ? r.start : `${r.start} to ${r.end - 1}`};\n`;
  }
  if (m.reservedName.length) s += `${inner}reserved ${m.reservedName.map(quote).join(", ")};\n`;
  for (const r of m.extensionRange) {
    s += `${inner}extensions ${r.start} to ${r.end === 536870912 ? "max" : r.end - 1};\n`;
  }
  for (const e of m.enumType) s += printEnum(e, inner);
  for (const n of m.nestedType) s += printMessage(n, inner);
  const printedOneofs = new Set<number>();
  for (const f of m.field) {
    if (f.oneofIndex === undefined || !isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex)) {
      s += printField(f, inner, false);
      continue;
    }
    const idx = f.oneofIndex;
    if (printedOneofs.has(idx)) continue;
    printedOneofs.add(idx);
    s += `${inner}oneof ${m.oneofDecl[idx]?.name} {\n`;
    for (const g of m.field) {
      if (isFieldSet(g, FieldDescriptorProtoSchema.field.oneofIndex) && g.oneofIndex === idx) {
        s += printField(g, `${inner}  `, true);
      }
    }
    s += `${inner}}\n`;
  }
  if (m.extension.length) throw new Error(`nested extensions in ${m.name} unsupported`);
  if (
    m.options &&
    !equals(
      DescriptorProtoSchema.field.options.message!,
      m.options,
      create(DescriptorProtoSchema.field.options.message!),
    )
  ) {
    throw new Error(`message options on ${m.name} unsupported`);
  }
  return `${s}${indent}}\n`;
}

function printFile(f: FileDescriptorProto): string {
  const o = f.options;
  let s = "// Code generated by libs/contracts/scripts/vendor-protos.ts from the descriptor embedded in\n";
  s += "// @bufbuild/protovalidate. DO NOT EDIT. Comments are not part of the embedded descriptor.\n";
  s += `syntax = ${quote(f.syntax || "proto2")};\n\npackage ${f.package};\n\n`;
  for (const d of f.dependency) s += `import ${quote(d)};\n`;
  s += "\n";
  if (o) {
    if (o.goPackage) s += `option go_package = ${quote(o.goPackage)};\n`;
    if (o.javaMultipleFiles) s += "option java_multiple_files = true;\n";
    if (o.javaOuterClassname) s += `option java_outer_classname = ${quote(o.javaOuterClassname)};\n`;
    if (o.javaPackage) s += `option java_package = ${quote(o.javaPackage)};\n`;
    s += "\n";
  }
  for (const e of f.extension) {
    s += `extend ${e.extendee} {\n${printField(e, "  ", false)}}\n\n`;
  }
  for (const e of f.enumType) s += `${printEnum(e, "")}\n`;
  for (const m of f.messageType) s += `${printMessage(m, "")}\n`;
  return s;
}

/** JSON with object keys sorted, so that field order in the encoding does not matter. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonical(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}

// ---- write, and optionally verify ------------------------------------------------------------

for (const [from, to] of copies) {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  copyFileSync(from, join(out, to));
}
const validatePath = "buf/validate/validate.proto";
mkdirSync(join(out, dirname(validatePath)), { recursive: true });
writeFileSync(join(out, validatePath), printFile(file_buf_validate_validate.proto));

if (process.argv.includes("--check")) {
  const dir = mkdtempSync(join(tmpdir(), "vendor-protos-"));
  try {
    const image = join(dir, "image.binpb");
    execFileSync(
      "npx",
      ["buf", "build", "third_party/proto", "--path", `third_party/proto/${validatePath}`, "-o", image],
      {
        stdio: "inherit",
      },
    );
    const set = fromBinary(FileDescriptorSetSchema, readFileSync(image));
    const built = set.file.find((f) => f.name === validatePath);
    if (!built) throw new Error("buf did not build validate.proto");
    // Compare as JSON with the extensions resolved: the binary encoding of options may differ
    // (unknown-field order), the meaning may not.
    const registry = createRegistry(file_buf_validate_validate);
    const normalize = (f: FileDescriptorProto) => {
      const c = clone(FileDescriptorProtoSchema, f);
      c.sourceCodeInfo = undefined;
      return canonical(toJson(FileDescriptorProtoSchema, c, { registry }));
    };
    if (normalize(built) !== normalize(file_buf_validate_validate.proto)) {
      throw new Error("printed validate.proto does not compile to the embedded descriptor");
    }
    console.log("validate.proto: printed source compiles to the embedded descriptor");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
