// A quick yes for requests that plainly pass their protovalidate rules, compiled once per message
// type from the same `buf.validate` options protovalidate reads. It only ever says "valid" when
// protovalidate would: anything it does not know, and every request it does not accept, goes to
// protovalidate, which answers exactly as before (its violations and messages included).
import {
  type DescField,
  type DescMessage,
  getOption,
  isFieldSet,
  type Message,
  ScalarType,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  field as fieldRulesOf,
  message as messageRulesOf,
  oneof as oneofRulesOf,
  file_buf_validate_validate as rulesFile,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";

/** True only if the message passes every rule of its type (and of the messages it holds). */
export type Accept = (message: Message) => boolean;
type Check = (value: unknown) => boolean;

/** What cannot be compiled here: the caller leaves the type to protovalidate. */
class Unsupported extends Error {
  override name = "Unsupported";
}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
/**
 * `string.pattern`s that mean the same to RE2 (protovalidate's engine) and to a JavaScript RegExp:
 * anchored, literal ASCII letters/digits/`_`/`-` and classes of them, quantifiers (counts under
 * RE2's limit of 1000, without a leading zero: RE2 reads `a{02}` as the text `a{02}`, JavaScript
 * as `aa`). Other patterns are left to protovalidate.
 */
const PLAIN_PATTERN =
  /^\^(?:(?:\[(?:[A-Za-z0-9]-[A-Za-z0-9]|[A-Za-z0-9_])+-?\]|[A-Za-z0-9_])(?:\{(?:0|[1-9]\d{0,2})(?:,(?:0|[1-9]\d{0,2}))?\}|[+*?])?)+\$$/;

/** The accept function of `desc`, or undefined when a rule of it is outside what is compiled here. */
export function compileAccept(desc: DescMessage): Accept | undefined {
  try {
    const check = messageCheck(desc, new Map());
    return (m) => m.$typeName === desc.typeName && check(m);
  } catch {
    // Unsupported, or a rule protovalidate itself would refuse to compile (a bad pattern):
    // protovalidate decides, and reports it as it always did.
    return undefined;
  }
}

/** The mark of a message type whose check is being built. */
const BUILDING: Check = () => false;

function messageCheck(desc: DescMessage, compiling: Map<DescMessage, Check>): Check {
  const known = compiling.get(desc);
  // A recursive type (met again while its own check is being built) is left to protovalidate.
  if (known === BUILDING) throw new Unsupported(`${desc.typeName} is recursive`);
  if (known) return known;
  compiling.set(desc, BUILDING);
  if (hasAnySet(getOption(desc, messageRulesOf))) throw new Unsupported(`${desc.typeName} rules`);
  for (const o of desc.oneofs)
    if (hasAnySet(getOption(o, oneofRulesOf))) throw new Unsupported(`${o.name} rules`);
  const checks = desc.fields.map((f) => fieldCheck(f, compiling)).filter((c) => c !== undefined);
  const check: Check = (m) => {
    for (let i = 0; i < checks.length; i++) if (!(checks[i] as Check)(m)) return false;
    return true;
  };
  compiling.set(desc, check);
  return check;
}

/** The check of one field of a message, or undefined when nothing applies to it. */
function fieldCheck(field: DescField, compiling: Map<DescMessage, Check>): Check | undefined {
  const rules = getOption(field, fieldRulesOf);
  const ruled = hasAnySet(rules);
  if (ruled) {
    only(rules, ["required", "type"]);
    if (field.oneof) throw new Unsupported(`${field.name} in a oneof`);
  }
  const key = field.localName;
  switch (field.fieldKind) {
    case "message": {
      if (ruled && (rules.type.case !== undefined || !rules.required))
        throw new Unsupported(`${field.name} rules`);
      const inner = messageCheck(field.message, compiling);
      const required = rules.required;
      const read = messageValueOf(field);
      return (m) => {
        const v = read(m);
        return v === undefined ? !required : inner(v);
      };
    }
    case "list": {
      if (!ruled) {
        if (field.listKind !== "message") return undefined;
        const inner = messageCheck(field.message, compiling);
        return (m) => ((m as unknown as Record<string, unknown[]>)[key] ?? []).every(inner);
      }
      if (rules.required || rules.type.case !== "repeated") throw new Unsupported(`${field.name} rules`);
      const r = rules.type.value;
      only(r, ["minItems", "maxItems", "items"]);
      const min = isSet(r, "minItems") ? Number(r.minItems) : 0;
      const max = isSet(r, "maxItems") ? Number(r.maxItems) : Number.POSITIVE_INFINITY;
      let item: Check | undefined;
      if (field.listKind === "message") {
        if (r.items && hasAnySet(r.items)) throw new Unsupported(`${field.name} items rules`);
        item = messageCheck(field.message, compiling);
      } else if (r.items && hasAnySet(r.items)) {
        if (field.listKind !== "scalar") throw new Unsupported(`${field.name} items`);
        only(r.items, ["type"]);
        item = scalarCheck(field.scalar, r.items.type);
      }
      return (m) => {
        const list = (m as unknown as Record<string, unknown[]>)[key] ?? [];
        if (list.length < min || list.length > max) return false;
        return item === undefined || list.every(item);
      };
    }
    case "map":
      if (ruled || field.mapKind === "message") throw new Unsupported(`${field.name} map`);
      return undefined;
    case "enum":
      if (ruled) throw new Unsupported(`${field.name} enum rules`);
      return undefined;
    case "scalar": {
      if (!ruled) return undefined;
      // Rules of a field with presence apply only when it is set: left to protovalidate.
      if (rules.required || field.presence !== FeatureSet_FieldPresence.IMPLICIT)
        throw new Unsupported(`${field.name} presence`);
      const check = scalarCheck(field.scalar, rules.type);
      return (m) => check((m as unknown as Record<string, unknown>)[key]);
    }
  }
}

/**
 * How the value of a message field is read: a member of a oneof is not a property of the message
 * but the value of its oneof (`{ case, value }`), so reading `m[localName]` would skip it.
 */
function messageValueOf(field: DescField): (m: unknown) => unknown {
  const key = field.localName;
  const oneof = field.oneof?.localName;
  if (oneof === undefined) return (m) => (m as Record<string, unknown>)[key];
  return (m) => {
    const o = (m as Record<string, { case?: string; value?: unknown } | undefined>)[oneof];
    return o?.case === key ? o.value : undefined;
  };
}

/** The rules of one scalar kind: strings (length, uuid, plain patterns) and number bounds. */
function scalarCheck(scalar: ScalarType, type: { case: string | undefined; value?: unknown }): Check {
  const r = type.value as Message & Record<string, unknown>;
  if (scalar === ScalarType.STRING && type.case === "string") return stringCheck(r);
  const numeric: Partial<Record<ScalarType, string>> = {
    [ScalarType.INT32]: "int32",
    [ScalarType.INT64]: "int64",
    [ScalarType.UINT32]: "uint32",
    [ScalarType.UINT64]: "uint64",
    [ScalarType.SINT32]: "sint32",
    [ScalarType.SINT64]: "sint64",
    [ScalarType.DOUBLE]: "double",
    [ScalarType.FLOAT]: "float",
  };
  if (type.case === undefined || numeric[scalar] !== type.case) throw new Unsupported(`${type.case} rules`);
  only(r, ["lessThan", "greaterThan"]);
  const big =
    typeof (r.lessThan as { value?: unknown }).value === "bigint" ||
    typeof (r.greaterThan as { value?: unknown }).value === "bigint";
  const bound = (v: unknown) => (big ? BigInt(v as bigint) : Number(v));
  const lt = r.lessThan as { case?: "lt" | "lte"; value?: unknown };
  const gt = r.greaterThan as { case?: "gt" | "gte"; value?: unknown };
  const hi = lt.case === undefined ? undefined : bound(lt.value);
  const lo = gt.case === undefined ? undefined : bound(gt.value);
  return (raw) => {
    if (typeof raw !== "number" && typeof raw !== "bigint") return false;
    const v = big
      ? typeof raw === "bigint"
        ? raw
        : Number.isInteger(raw)
          ? BigInt(raw)
          : undefined
      : Number(raw);
    if (v === undefined) return false;
    // A NaN fails every comparison: refused here, protovalidate decides.
    if (hi !== undefined && !(lt.case === "lt" ? v < hi : v <= hi)) return false;
    if (lo !== undefined && !(gt.case === "gt" ? v > lo : v >= lo)) return false;
    return true;
  };
}

function stringCheck(r: Message & Record<string, unknown>): Check {
  only(r, ["minLen", "maxLen", "pattern", "wellKnown"]);
  const wellKnown = r.wellKnown as { case?: string; value?: unknown };
  if (wellKnown.case !== undefined && (wellKnown.case !== "uuid" || wellKnown.value !== true))
    throw new Unsupported(`string ${wellKnown.case}`);
  const uuid = wellKnown.case === "uuid";
  const min = isSet(r, "minLen") ? Number(r.minLen) : 0;
  const max = isSet(r, "maxLen") ? Number(r.maxLen) : Number.POSITIVE_INFINITY;
  let pattern: RegExp | undefined;
  if (isSet(r, "pattern")) {
    if (!PLAIN_PATTERN.test(r.pattern as string)) throw new Unsupported(`pattern ${r.pattern}`);
    pattern = new RegExp(r.pattern as string);
  }
  const counted = min > 0 || max !== Number.POSITIVE_INFINITY;
  return (v) => {
    if (typeof v !== "string") return false;
    if (uuid && !UUID.test(v)) return false;
    if (pattern && !pattern.test(v)) return false;
    if (counted) {
      // protovalidate counts code points, not UTF-16 units.
      const n = codePoints(v);
      if (n < min || n > max) return false;
    }
    return true;
  };
}

function codePoints(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Whether the field of `rules` named `localName` is set. */
function isSet(rules: Message, localName: string): boolean {
  const f = schemaOf(rules).fields.find((d) => d.localName === localName);
  if (!f) throw new Unsupported(localName);
  return isFieldSet(rules, f);
}

/** Whether any field of a rules message is set (unknown fields, i.e. predefined rules, count). */
function hasAnySet(rules: Message): boolean {
  if ((rules.$unknown?.length ?? 0) > 0) return true;
  const schema = schemaOf(rules);
  return schema.fields.some((f) => isFieldSet(rules, f));
}

/** Throws Unsupported unless the rules set nothing but `allowed` (local names; oneofs by name). */
function only(rules: Message, allowed: readonly string[]): void {
  if ((rules.$unknown?.length ?? 0) > 0) throw new Unsupported("predefined rules");
  for (const f of schemaOf(rules).fields) {
    if (!isFieldSet(rules, f)) continue;
    const name = f.oneof ? f.oneof.localName : f.localName;
    if (!allowed.includes(name) && !allowed.includes(f.localName)) throw new Unsupported(f.name);
  }
}

const schemas = new Map<string, DescMessage>();
/** The descriptor of a rules message, by its type name (they all come from validate_pb). */
function schemaOf(rules: Message): DescMessage {
  const known = schemas.get(rules.$typeName);
  if (known) return known;
  const found = rulesFile.messages.find((d) => d.typeName === rules.$typeName);
  if (!found) throw new Unsupported(rules.$typeName);
  schemas.set(rules.$typeName, found);
  return found;
}
