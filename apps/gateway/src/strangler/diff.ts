import { orderedItems, sameOrderStatus } from "./order-rules.js";

/** One field where the two sides' answers differ. */
export interface FieldDiff {
  /** `products[2].price.amount_minor`; `(status)` for the HTTP status. */
  path: string;
  legacy: unknown;
  new: unknown;
}

/**
 * Whether a field path is ignored by one of `rules`. A rule is a dotted path whose segments
 * match field names or array indexes, `*` matching any one segment and `**` any number of them
 * (`**.create_time`, `products.*.id`, `next_page_token`).
 */
export function ignored(path: readonly string[], rules: readonly string[]): boolean {
  return rules.some((rule) => globMatch(rule.split("."), 0, path, 0));
}

function globMatch(rule: readonly string[], i: number, path: readonly string[], j: number): boolean {
  if (i === rule.length) return j === path.length;
  const seg = rule[i]!;
  if (seg === "**") {
    for (let k = j; k <= path.length; k++) if (globMatch(rule, i + 1, path, k)) return true;
    return false;
  }
  if (j === path.length) return false;
  return (seg === "*" || seg === path[j]) && globMatch(rule, i + 1, path, j + 1);
}

function show(path: readonly string[]): string {
  let out = "";
  for (const p of path) out += /^\d+$/.test(p) ? `[${p}]` : out ? `.${p}` : p;
  return out || "(body)";
}

/**
 * Compares two JSON answers field by field and returns where they differ (at most `limit`),
 * skipping the fields the rules ignore. Objects compare by key (a key on one side only is a
 * difference), arrays by position (and length); the orders routes' rules (`order-rules.ts`) map
 * the saga's statuses and the order of an order's items; times compare as instants
 * ({@link sameInstant}).
 */
export function diffJson(legacy: unknown, next: unknown, rules: readonly string[], limit = 20): FieldDiff[] {
  const out: FieldDiff[] = [];
  const walk = (a: unknown, b: unknown, path: string[]) => {
    if (out.length >= limit || ignored(path, rules)) return;
    if (Array.isArray(a) && Array.isArray(b)) {
      const [la, lb] = [orderedItems(path, a), orderedItems(path, b)];
      for (let i = 0; i < Math.max(la.length, lb.length); i++) walk(la[i], lb[i], [...path, String(i)]);
      return;
    }
    if (isObject(a) && isObject(b)) {
      const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
      for (const k of [...keys].sort()) walk(a[k], b[k], [...path, k]);
      return;
    }
    if (a !== b && !sameOrderStatus(path, a, b) && !sameInstant(a, b))
      out.push({ path: show(path), legacy: a, new: b });
  };
  walk(legacy, next, []);
  return out;
}

/** An RFC 3339 time in UTC as both sides print one (`2024-01-15T09:09:00Z`, `...00.000Z`, `...00.123456Z`). */
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/**
 * Whether two differing strings are the same instant. The monolith prints its times with
 * milliseconds always (`Date#toISOString`: `09:09:00.000Z`); the transcoder prints proto3 JSON,
 * whose Timestamp drops a zero fraction (`09:09:00Z`) and may carry 6 or 9 digits. Legacy's times
 * hold milliseconds, so they are compared to the millisecond.
 */
export function sameInstant(legacy: unknown, next: unknown): boolean {
  if (typeof legacy !== "string" || typeof next !== "string") return false;
  if (!RFC3339_UTC.test(legacy) || !RFC3339_UTC.test(next)) return false;
  return Date.parse(legacy) === Date.parse(next);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
