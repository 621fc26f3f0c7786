import type { RouteSetting } from "./strangler.js";

/**
 * Parses `STRANGLER_ROUTES`: `;`-separated `<method>=<weight>[,shadow]`, e.g.
 * `ListProducts=0,shadow;GetProduct=25`. Routes not named start at 0 (with a legacy URL).
 */
export function parseRouteSettings(text: string): Map<string, RouteSetting> {
  const out = new Map<string, RouteSetting>();
  for (const part of text
    .split(";")
    .map((p) => p.trim())
    .filter(Boolean)) {
    const m = /^([A-Za-z][A-Za-z0-9_]*)=(\d{1,3})(,shadow)?$/.exec(part);
    if (!m) throw new Error(`"${part}": expected <method>=<0-100>[,shadow]`);
    const weight = Number(m[2]);
    if (weight > 100) throw new Error(`"${part}": the weight must be from 0 to 100`);
    if (out.has(m[1]!)) throw new Error(`"${part}": ${m[1]} is named twice`);
    out.set(m[1]!, { weight, shadow: Boolean(m[3]) });
  }
  return out;
}
