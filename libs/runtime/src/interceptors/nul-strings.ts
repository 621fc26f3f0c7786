import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

type Fields = Record<string, unknown>;

/** Deeper than any contract nests; protobuf-es refuses far deeper input before this runs. */
const MAX_DEPTH = 64;

/** The field's value, or undefined when it is a oneof member that is not the chosen case. */
function fieldValue(field: DescField, message: Fields): unknown {
  if (!field.oneof) return message[field.localName];
  const chosen = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
  return chosen?.case === field.localName ? chosen.value : undefined;
}

/** A NUL in `value` (a string, or a message of `field`'s type), as the path where it is. */
function inValue(field: DescField, value: unknown, at: string, depth: number): string | undefined {
  // Wrapper types (google.protobuf.StringValue) arrive unwrapped, as the string itself.
  if (typeof value === "string") return value.includes("\0") ? at : undefined;
  if (field.message && typeof value === "object" && value !== null) {
    return findNul(field.message, value as Fields, at, depth + 1);
  }
  return undefined;
}

/** The path of the first string field holding a NUL character, e.g. `items[2].product_id`. */
function findNul(desc: DescMessage, message: Fields, path: string, depth: number): string | undefined {
  if (depth > MAX_DEPTH) return undefined;
  for (const field of desc.fields) {
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar !== ScalarType.STRING) continue;
        break;
      case "enum":
        continue;
      // Lists and maps of numbers and enums hold no strings.
      case "list":
        if (field.listKind === "enum" || (field.listKind === "scalar" && field.scalar !== ScalarType.STRING))
          continue;
        break;
      case "map":
        if (
          field.mapKey !== ScalarType.STRING &&
          (field.mapKind === "enum" || (field.mapKind === "scalar" && field.scalar !== ScalarType.STRING))
        )
          continue;
        break;
      default:
        break;
    }
    const value = fieldValue(field, message);
    if (value === undefined || value === null) continue;
    const name = path ? `${path}.${field.name}` : field.name;
    if (field.fieldKind === "list") {
      const items = value as unknown[];
      for (let i = 0; i < items.length; i++) {
        const found = inValue(field, items[i], `${name}[${i}]`, depth);
        if (found) return found;
      }
    } else if (field.fieldKind === "map") {
      for (const key in value as Fields) {
        if (key.includes("\0")) return `${name} (a key)`;
        const found = inValue(field, (value as Fields)[key], `${name}["${key}"]`, depth);
        if (found) return found;
      }
    } else {
      const found = inValue(field, value, name, depth);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * Refuses a request with a NUL character (U+0000) in any string field, with INVALID_ARGUMENT
 * naming the field. Protobuf allows it, but no contract has a use for it and PostgreSQL's `text`
 * and `jsonb` cannot store it: without this check the insert fails deep in a handler and the
 * client sees INTERNAL. Streaming requests are checked message by message.
 */
export function createNulStringInterceptor(): Interceptor {
  const check = (desc: DescMessage, message: unknown) => {
    const field = findNul(desc, message as Fields, "", 0);
    if (field) {
      throw new ConnectError(`${field}: must not contain a NUL character (\\0)`, Code.InvalidArgument);
    }
  };
  return (next) => (req) => {
    if (!req.stream) {
      try {
        check(req.method.input, req.message);
      } catch (err) {
        return Promise.reject(err);
      }
      return next(req);
    }
    const input = req.message;
    return next({
      ...req,
      message: (async function* () {
        for await (const m of input) {
          check(req.method.input, m);
          yield m;
        }
      })(),
    });
  };
}
