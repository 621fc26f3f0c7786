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

function hasNul(value: unknown): boolean {
  return typeof value === "string" && value.includes("\0");
}

/** The path of the first string field holding a NUL character, e.g. `items[2].product_id`. */
function findNul(desc: DescMessage, message: Fields, path: string, depth: number): string | undefined {
  if (depth > MAX_DEPTH) return undefined;
  for (const field of desc.fields) {
    const value = fieldValue(field, message);
    if (value === undefined || value === null) continue;
    const name = path ? `${path}.${field.name}` : field.name;
    const inner = (v: unknown, at: string): string | undefined => {
      // Wrapper types (google.protobuf.StringValue) arrive unwrapped, as the string itself.
      if (hasNul(v)) return at;
      if (field.message && typeof v === "object" && v !== null) {
        return findNul(field.message, v as Fields, at, depth + 1);
      }
      return undefined;
    };
    switch (field.fieldKind) {
      case "scalar":
        if (field.scalar === ScalarType.STRING && hasNul(value)) return name;
        break;
      case "message": {
        const found = inner(value, name);
        if (found) return found;
        break;
      }
      case "list": {
        const items = value as unknown[];
        for (let i = 0; i < items.length; i++) {
          const found = inner(items[i], `${name}[${i}]`);
          if (found) return found;
        }
        break;
      }
      case "map":
        for (const [key, v] of Object.entries(value as Fields)) {
          if (hasNul(key)) return `${name} (a key)`;
          const found = inner(v, `${name}["${key}"]`);
          if (found) return found;
        }
        break;
      default:
        break;
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
  return (next) => async (req) => {
    if (!req.stream) {
      check(req.method.input, req.message);
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
