import { readFileSync } from "node:fs";
import { fromBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";

/**
 * The contracts' comments by full name: `pkg.Service`, `pkg.Service.Method`, `pkg.Message`,
 * `pkg.Message.field`, `pkg.Enum`, `pkg.Enum.VALUE`. Server reflection sends descriptors
 * without source info, so the explorer takes them from this build's protos (`api-comments.json`,
 * written at build time by `build-api-comments.ts`).
 */
export type ApiComments = Record<string, string>;

/** A comment as written, without the `//` column's leading space on each line. */
function clean(text: string | undefined): string {
  if (!text) return "";
  return text
    .split("\n")
    .map((l) => (l.startsWith(" ") ? l.slice(1) : l))
    .join("\n")
    .trim();
}

// Field numbers of descriptor.proto, the steps of a SourceCodeInfo location's path.
const FILE_MESSAGE = 4;
const FILE_ENUM = 5;
const FILE_SERVICE = 6;
const MESSAGE_FIELD = 2;
const MESSAGE_NESTED = 3;
const MESSAGE_ENUM = 4;
const ENUM_VALUE = 2;
const SERVICE_METHOD = 2;

/**
 * The leading comments of every service, method, message, field, enum and enum value of the
 * files whose package starts with `prefix`, from a FileDescriptorSet that kept its source info
 * (`buf build --as-file-descriptor-set`, `protoc --include_source_info`).
 */
export function extractApiComments(set: Uint8Array, prefix = "meshwork."): ApiComments {
  const out: ApiComments = {};
  for (const file of fromBinary(FileDescriptorSetSchema, set).file) {
    if (!file.package.startsWith(prefix)) continue;
    const byPath = new Map<string, string>();
    for (const loc of file.sourceCodeInfo?.location ?? []) {
      const text = clean(loc.leadingComments);
      if (text) byPath.set(loc.path.join("."), text);
    }
    const put = (name: string, path: number[]) => {
      const text = byPath.get(path.join("."));
      if (text) out[name] = text;
    };
    const onEnum = (e: EnumDescriptorProto, scope: string, path: number[]) => {
      const name = `${scope}.${e.name}`;
      put(name, path);
      e.value.forEach((v, i) => {
        put(`${name}.${v.name}`, [...path, ENUM_VALUE, i]);
      });
    };
    const onMessage = (m: DescriptorProto, scope: string, path: number[]) => {
      const name = `${scope}.${m.name}`;
      put(name, path);
      m.field.forEach((f, i) => {
        put(`${name}.${f.name}`, [...path, MESSAGE_FIELD, i]);
      });
      m.nestedType.forEach((n, i) => {
        onMessage(n, name, [...path, MESSAGE_NESTED, i]);
      });
      m.enumType.forEach((e, i) => {
        onEnum(e, name, [...path, MESSAGE_ENUM, i]);
      });
    };
    file.messageType.forEach((m, i) => {
      onMessage(m, file.package, [FILE_MESSAGE, i]);
    });
    file.enumType.forEach((e, i) => {
      onEnum(e, file.package, [FILE_ENUM, i]);
    });
    file.service.forEach((s, i) => {
      const name = `${file.package}.${s.name}`;
      put(name, [FILE_SERVICE, i]);
      s.method.forEach((m, j) => {
        put(`${name}.${m.name}`, [FILE_SERVICE, i, SERVICE_METHOD, j]);
      });
    });
  }
  return out;
}

/** The comments written at build time next to the console's code, or none (never fails). */
export function loadApiComments(url = new URL("./api-comments.json", import.meta.url)): ApiComments {
  try {
    return JSON.parse(readFileSync(url, "utf8")) as ApiComments;
  } catch {
    return {};
  }
}
