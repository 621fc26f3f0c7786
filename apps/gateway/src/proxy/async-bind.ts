import { AsyncResource } from "node:async_hooks";

const DEP0172 = "The asyncResource property on bound functions is deprecated";

let warned = false;

function warnOnce(): void {
  if (warned) return;
  warned = true;
  // As Node's own deprecate() does: once per process, silenced by --no-deprecation.
  process.emitWarning(DEP0172, "DeprecationWarning", "DEP0172");
}

let installed = false;

/** Where a bound function keeps the resource its `asyncResource` accessor reads and replaces. */
const SELF = Symbol("asyncResource");

const LENGTH = { configurable: true, enumerable: false, writable: false } as const;

const ACCESSOR: PropertyDescriptor = {
  configurable: true,
  enumerable: true,
  get(this: { [SELF]?: AsyncResource }) {
    warnOnce();
    return this[SELF];
  },
  set(this: { [SELF]?: AsyncResource }, value: AsyncResource) {
    warnOnce();
    this[SELF] = value;
  },
};

type AnyFn = (...args: unknown[]) => unknown;
/** `AsyncResource.prototype.bind` as Node has it (its types leave `thisArg` out). */
type Bind = (this: AsyncResource, fn: AnyFn, thisArg?: unknown) => AnyFn;

/**
 * Makes `AsyncResource.prototype.bind` cheap, for the whole process: Node 20's builds its bound
 * function's deprecated `asyncResource` accessor from two `util.deprecate()` wrappers, each a
 * function whose prototype is set to a fresh closure (a new map every time): 20 us per bind in a
 * microbenchmark here, 0.1 us with this one. Node's HTTP/2 client binds one per stream
 * (`ClientHttp2Session.request()`: `reqAsync.bind(requestOnConnect...)`), so every call through
 * the gateway paid it: `deprecate` was 3.8-4.2% of the gateway's busy time in the bench (issue
 * 23), with no way around it in the public API. This `bind` is Node 20.20's (`lib/async_hooks.js`)
 * without the wrappers: the bound function runs `fn` in the resource's scope with the same `this`
 * and arguments, has `fn`'s length, and an enumerable, configurable `asyncResource` accessor that
 * reads and replaces a resource (not the one `fn` runs in) and warns DEP0172 once, as Node's
 * does. Idempotent. Only on Node 20, whose `bind` this one was measured against and copies;
 * another major keeps its own (returns false then).
 */
export function installLeanAsyncBind(nodeVersion = process.versions.node): boolean {
  if (!nodeVersion.startsWith("20.")) return false;
  if (installed) return true;
  installed = true;
  const original = AsyncResource.prototype.bind as unknown as Bind;
  const bind: Bind = function bind(fn, thisArg) {
    // Node's own validation and error for anything else.
    if (typeof fn !== "function") return original.call(this, fn, thisArg);
    const resource = this;
    const bound: AnyFn & { [SELF]?: AsyncResource } =
      thisArg === undefined
        ? function (this: unknown, ...args: unknown[]) {
            return resource.runInAsyncScope(fn, this, ...args);
          }
        : (resource.runInAsyncScope.bind(resource, fn, thisArg) as AnyFn);
    // What the accessor reads and replaces (as in Node, not where `fn` runs).
    bound[SELF] = resource;
    // Both bound forms have length 0: redefined only when `fn`'s differs (0 for Node's own use).
    if (fn.length !== 0) Object.defineProperty(bound, "length", { ...LENGTH, value: fn.length });
    // One accessor pair for every bound function: they share their shape (a closure pair each
    // made a new one: 1.8 us a bind instead of 0.1).
    Object.defineProperty(bound, "asyncResource", ACCESSOR);
    return bound;
  };
  AsyncResource.prototype.bind = bind as unknown as AsyncResource["bind"];
  return true;
}
