import type { IncomingHttpHeaders } from "node:http2";

/**
 * A `Headers` over a node:http2 header object, for the hot path of a call: constructing a
 * WHATWG `Headers` (undici's, with its name/value validation) costs more than most handlers.
 * Reads go straight to the node object until something writes or iterates; then the values are
 * copied once into a map. Names are case-insensitive; pseudo-headers (`:path`) are not headers
 * and are hidden, as in Connect's own conversion. Repeated values read as one, joined by ", ".
 */
export class LazyHeaders implements Headers {
  #raw: IncomingHttpHeaders | undefined;
  #map: Map<string, string> | undefined;

  constructor(raw?: IncomingHttpHeaders) {
    this.#raw = raw;
  }

  #own(): Map<string, string> {
    if (this.#map) return this.#map;
    const map = new Map<string, string>();
    const raw = this.#raw;
    if (raw) {
      for (const key of Object.keys(raw)) {
        if (key.charCodeAt(0) === 58 /* : */) continue;
        const value = raw[key];
        if (value === undefined) continue;
        map.set(
          key,
          typeof value === "string" ? value : Array.isArray(value) ? value.join(", ") : String(value),
        );
      }
    }
    this.#raw = undefined;
    this.#map = map;
    return map;
  }

  get(name: string): string | null {
    const key = name.toLowerCase();
    if (this.#map) return this.#map.get(key) ?? null;
    if (key.charCodeAt(0) === 58) return null;
    const value = this.#raw?.[key];
    if (value === undefined) return null;
    return typeof value === "string" ? value : Array.isArray(value) ? value.join(", ") : String(value);
  }

  has(name: string): boolean {
    return this.get(name) !== null;
  }

  set(name: string, value: string): void {
    this.#own().set(checkedName(name), normalizeValue(value));
  }

  append(name: string, value: string): void {
    const map = this.#own();
    const key = checkedName(name);
    const prior = map.get(key);
    const v = normalizeValue(value);
    map.set(key, prior === undefined ? v : `${prior}, ${v}`);
  }

  delete(name: string): void {
    this.#own().delete(name.toLowerCase());
  }

  getSetCookie(): string[] {
    const value = this.get("set-cookie");
    return value === null ? [] : [value];
  }

  forEach(callback: (value: string, key: string, parent: Headers) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }

  *entries(): IterableIterator<[string, string]> {
    // Sorted by name, as WHATWG Headers iterate.
    const sorted = [...this.#own()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    for (const entry of sorted) yield entry;
  }

  *keys(): IterableIterator<string> {
    for (const [key] of this.entries()) yield key;
  }

  *values(): IterableIterator<string> {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator](): IterableIterator<[string, string]> {
    return this.entries();
  }

  /** The headers as a node:http2 header object (for `stream.respond` / `sendTrailers`). */
  writeTo(target: Record<string, string>): Record<string, string> {
    if (this.#map) {
      for (const [key, value] of this.#map) target[key] = value;
    } else if (this.#raw) {
      for (const key of Object.keys(this.#raw)) {
        const value = this.get(key);
        if (value !== null) target[key] = value;
      }
    }
    return target;
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

function checkedName(name: string): string {
  if (!TOKEN.test(name)) throw new TypeError(`invalid header name: ${JSON.stringify(name)}`);
  return name.toLowerCase();
}

function normalizeValue(value: string): string {
  const v = String(value).trim();
  if (/[\r\n\0]/.test(v)) throw new TypeError("invalid header value");
  return v;
}
