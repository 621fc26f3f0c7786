import type http2 from "node:http2";
import { create, type DescMessage, type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextKey,
  type ContextValues,
  createMethodImplSpec,
  createServiceImplSpec,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import { parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { endInSlices } from "./answer-slices.js";
import { EARLY_END_SOURCE, type EarlyEndSource } from "./call-end.js";
import { decodeError } from "./decode-errors.js";
import {
  extraMessage,
  frameMessage,
  headersToNode,
  MAX_TIMER_MS,
  missingMessage,
  unaryMessage,
} from "./grpc-wire.js";
import { LazyHeaders } from "./lazy-headers.js";

/**
 * The gRPC unary fast path: serves a unary call in the gRPC protocol (binary, uncompressed)
 * straight from a `node:http2` stream, with the same interceptor chain, handler context, status
 * codes, messages and trailers as `@connectrpc/connect`'s gRPC handler, but without its
 * per-call async-iterable pipeline, WHATWG `Headers`, URL parsing, and the `AbortController`
 * it aborts (building a DOMException) at the end of every call. Those were most of the cost
 * of a small call (issue 7's profile). Everything else (streaming methods, gRPC-Web, Connect,
 * JSON, compression, HTTP/1.1) declines here and goes through the Connect adapter unchanged.
 *
 * It uses `@connectrpc/connect/protocol-grpc` helpers (timeout parsing, trailer status), which
 * Connect marks internal: the runtime pins `@connectrpc/connect` to an exact version, and the
 * equivalence test (`grpc-unary.test.ts`) is what tells whether an upgrade changed the wire.
 */

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;
type AnyUnaryFn = (req: UnaryRequest) => Promise<UnaryResponse>;

interface Route {
  method: DescMethod & { methodKind: "unary" };
  /** The request URL for an `:authority` (Connect's `HandlerContext.url`), made once per host. */
  url(authority: string | undefined): string;
  input: DescMessage;
  output: DescMessage;
  next: AnyUnaryFn;
}

export interface GrpcUnaryOptions {
  interceptors: readonly Interceptor[];
  /** Largest request message accepted, as in the Connect adapter. */
  readMaxBytes: number;
  /** Context values for one call, taken when its headers arrive. */
  contextValues(): ContextValues;
}

/** A request's call object sits under this key; it is also the request's early-end source. */
const CALL: typeof EARLY_END_SOURCE = EARLY_END_SOURCE;
const RESPONSE_CONTENT_TYPE = "application/grpc+proto";

export class GrpcUnaryFastPath {
  readonly #routes = new Map<string, Route>();
  readonly #options: GrpcUnaryOptions;

  constructor(options: GrpcUnaryOptions) {
    this.#options = options;
  }

  /**
   * Wraps a router: registrations go on to it unchanged, and unary methods registered without
   * per-service options (which could change protocols or limits) are also served here.
   */
  record(inner: ConnectRouter): ConnectRouter {
    const outer: ConnectRouter = {
      get handlers() {
        return inner.handlers;
      },
      service: (service, impl, opts) => {
        inner.service(service, impl, opts);
        if (opts === undefined) {
          const spec = createServiceImplSpec(service, impl);
          for (const m of Object.values(spec.methods)) this.#add(m);
        }
        return outer;
      },
      rpc: (method, impl, opts) => {
        inner.rpc(method, impl, opts);
        if (opts === undefined) this.#add(createMethodImplSpec(method, impl));
        return outer;
      },
    };
    return outer;
  }

  #add(spec: MethodImplSpec) {
    if (spec.kind !== "unary") return;
    const { method, impl } = spec as UnarySpec;
    const output = method.output;
    const respond = (call: UnaryCall, result: unknown): UnaryResponse => ({
      stream: false,
      service: method.parent,
      method,
      header: call.responseHeader,
      trailer: call.responseTrailer,
      message: create(output, result as never),
    });
    const last: AnyUnaryFn = (req) => {
      const call = (req as CallRequest)[CALL];
      const result = impl(req.message, call.handlerContext(req));
      // Most handlers answer from memory or after one await; skip a tick when it is a value.
      return isThenable(result)
        ? Promise.resolve(result).then((r) => respond(call, r))
        : Promise.resolve(respond(call, result));
    };
    const next = this.#options.interceptors.reduceRight<AnyUnaryFn>(
      (n, interceptor) => interceptor(n as never) as unknown as AnyUnaryFn,
      last,
    );
    const path = `/${method.parent.typeName}/${method.name}`;
    const urls = new Map<string, string>();
    this.#routes.set(path, {
      method: method as Route["method"],
      url(authority = "localhost") {
        let url = urls.get(authority);
        if (url === undefined) {
          try {
            url = new URL(path, `http://${authority}`).toString();
          } catch {
            return `http://localhost${path}`; // an :authority that is no host name
          }
          if (urls.size < 64) urls.set(authority, url);
        }
        return url;
      },
      input: method.input,
      output,
      next,
    });
  }

  /**
   * Serves the stream if it is a gRPC unary call this path handles; returns false (having
   * touched nothing) otherwise.
   */
  handle(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean {
    if (headers[":method"] !== "POST") return false;
    const contentType = headers["content-type"];
    if (contentType !== "application/grpc" && contentType !== "application/grpc+proto") return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    if (headers.expect !== undefined) return false;
    const path = headers[":path"];
    const route = path === undefined ? undefined : this.#routes.get(path);
    if (!route) return false;
    new UnaryCall(route, stream, headers, this.#options).start();
    return true;
  }
}

interface CallRequest extends UnaryRequest {
  [CALL]: UnaryCall;
}

// One set of listeners for every stream (no closures per call): the call hangs off the stream.
const CALL_OF = Symbol("meshwork.call");
/**
 * How close to its deadline a client's CANCEL counts as the client timing out: a third of the
 * timeout, within these bounds. The client's clock starts when it sends the headers, this side's
 * when it reads them; on a busy event loop that gap alone passed a tenth of a 150 ms timeout and a
 * grpc-js reset at its deadline was logged `canceled` (CI). The price: a real cancel in the last
 * third of a call's time is reported as the deadline passing.
 */
const DEADLINE_SLACK_MIN_MS = 5;
const DEADLINE_SLACK_MAX_MS = 1_000;

const ignoreRejection = () => {};
/** `signal` of every fast-path request: the call's, created on first read. */
const SIGNAL_PROPERTY: PropertyDescriptor = {
  get(this: CallRequest) {
    return this[CALL].signal;
  },
  enumerable: true,
  configurable: true,
};
type CallStream = http2.ServerHttp2Stream & { [CALL_OF]: UnaryCall };
function onStreamClose(this: CallStream) {
  this[CALL_OF].onClose();
}
function onStreamData(this: CallStream, chunk: Buffer) {
  this[CALL_OF].onData(chunk);
}
function onStreamEnd(this: CallStream) {
  this[CALL_OF].onEnd();
}
function onWantTrailers(this: CallStream) {
  this[CALL_OF].onWantTrailers();
}
function ignoreError() {
  // A stream error is followed by "close", where the call learns it ended.
}
const noTimeout = () => undefined;

class UnaryCall implements EarlyEndSource {
  readonly responseHeader = new LazyHeaders();
  readonly responseTrailer = new LazyHeaders();
  readonly requestHeader: LazyHeaders;
  readonly #route: Route;
  readonly #stream: CallStream;
  readonly #headers: http2.IncomingHttpHeaders;
  readonly #options: GrpcUnaryOptions;
  readonly #values: ContextValues;
  #controller: AbortController | undefined;
  /** Why the call ended early (deadline, client reset), for a signal created afterwards. */
  #abortReason: unknown;
  #aborted = false;
  #abortedEarly = false;
  #deadline: number | undefined;
  #timeoutMs = 0;
  #timer: NodeJS.Timeout | undefined;
  #early: { promise: Promise<never>; reject: (reason: unknown) => void } | undefined;
  #responded = false;
  #trailer: Record<string, string> | undefined;
  #first: Buffer | undefined;
  #more: Buffer[] | undefined;
  #received = 0;
  /** Declared length of the first message, once its 5-byte prefix arrived. */
  #length = -1;

  constructor(
    route: Route,
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    options: GrpcUnaryOptions,
  ) {
    this.#route = route;
    this.#stream = stream as CallStream;
    this.#headers = headers;
    this.#options = options;
    this.#values = options.contextValues();
    this.requestHeader = new LazyHeaders(headers);
  }

  /** Created on first use only: most calls never look at it. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  /**
   * For the deadline interceptor (through `callEarlyEnd` in call-end.ts): rejected with the
   * reason when the call ends before its answer, without creating the call's `AbortSignal`;
   * never settled when the call completes normally.
   */
  earlyEnd(): Promise<never> {
    if (!this.#early) {
      let reject: (reason: unknown) => void = ignoreRejection;
      const promise = new Promise<never>((_, r) => {
        reject = r;
      });
      promise.catch(ignoreRejection);
      this.#early = { promise, reject };
      if (this.#aborted && this.#abortedEarly) reject(this.#abortReason);
    }
    return this.#early.promise;
  }

  /** Ends the call's signal; `early`: before its answer (deadline, client gone). */
  #abort(reason: unknown, early: boolean) {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#abortedEarly = early;
    this.#abortReason = reason;
    if (this.#timer) clearTimeout(this.#timer);
    this.#controller?.abort(reason);
    if (early) this.#early?.reject(reason);
  }

  start() {
    const stream = this.#stream;
    stream[CALL_OF] = this;
    stream.on("close", onStreamClose);
    stream.on("error", ignoreError);
    const timeout = parseTimeout(
      (this.#headers["grpc-timeout"] as string | undefined) ?? null,
      Number.MAX_SAFE_INTEGER,
    );
    if (timeout.error) {
      this.#fail(timeout.error);
      return;
    }
    if (timeout.timeoutMs !== undefined) {
      this.#deadline = Date.now() + timeout.timeoutMs;
      this.#timeoutMs = timeout.timeoutMs;
      if (timeout.timeoutMs <= 0) {
        this.#onDeadline();
        return;
      }
      // setTimeout takes at most 2^31 - 1 ms (about 24.8 days); a longer deadline never passes
      // while the call lives, so it gets no timer (a larger value would fire at once).
      if (timeout.timeoutMs <= MAX_TIMER_MS)
        this.#timer = setTimeout(() => this.#onDeadline(), timeout.timeoutMs);
    }
    stream.on("data", onStreamData);
    stream.once("end", onStreamEnd);
  }

  #onDeadline() {
    const err = new ConnectError("the operation timed out", Code.DeadlineExceeded);
    this.#abort(err, true);
    this.#fail(err);
  }

  /**
   * A gRPC client resets the stream (CANCEL) when its own deadline passes. Its clock started before
   * the request left, so that reset can arrive a little before this side's timer for the same
   * deadline fires; a reset that close to the deadline is the client timing out, not cancelling.
   */
  #clientDeadlinePassed(): boolean {
    const deadline = this.#deadline;
    if (deadline === undefined) return false;
    const remaining = deadline - Date.now();
    return remaining <= Math.min(DEADLINE_SLACK_MAX_MS, Math.max(DEADLINE_SLACK_MIN_MS, this.#timeoutMs / 3));
  }

  onClose() {
    // Node keeps a closed stream around for a while; let the call's objects go now.
    (this.#stream as Partial<CallStream>)[CALL_OF] = undefined;
    this.#trailer = undefined;
    if (!this.#responded) {
      // The client went away (RST_STREAM) or the session died before the answer.
      this.#responded = true;
      this.#abort(
        this.#stream.rstCode === 8 /* CANCEL */
          ? this.#clientDeadlinePassed()
            ? new ConnectError("the operation timed out", Code.DeadlineExceeded)
            : new ConnectError("http/2 stream closed with error code CANCEL (0x8)", Code.Canceled)
          : undefined,
        true,
      );
    } else {
      this.#abort(undefined, false);
    }
  }

  onData(chunk: Buffer) {
    if (this.#responded) return;
    if (this.#first === undefined) this.#first = chunk;
    else if (this.#more) this.#more.push(chunk);
    else this.#more = [chunk];
    this.#received += chunk.length;
    if (this.#length < 0 && this.#received >= 5) {
      this.#length = this.#body().readUInt32BE(1);
      const max = this.#options.readMaxBytes;
      if (this.#length > max) {
        this.#fail(
          new ConnectError(
            `message size ${this.#length} is larger than configured readMaxBytes ${max}`,
            Code.ResourceExhausted,
          ),
        );
        return;
      }
    }
    // A second message can only be refused; stop buffering once one is certainly there.
    if (this.#length >= 0 && this.#received > 5 + this.#length + 5 + this.#options.readMaxBytes) {
      this.#fail(extraMessage("input"));
    }
  }

  /** Everything received so far, as one buffer. */
  #body(): Buffer {
    const first = this.#first as Buffer;
    if (!this.#more) return first;
    const all = Buffer.concat([first, ...this.#more], this.#received);
    this.#first = all;
    this.#more = undefined;
    return all;
  }

  onEnd() {
    if (this.#responded) return;
    const received = this.#received;
    if (received === 0) return this.#fail(missingMessage("input"));
    const body = this.#body();
    this.#first = undefined;
    const bytes = unaryMessage(body, "input");
    if (bytes instanceof ConnectError) return this.#fail(bytes);
    let message: ReturnType<typeof fromBinary>;
    try {
      message = fromBinary(this.#route.input, bytes);
    } catch (e) {
      return this.#fail(decodeError(e));
    }
    this.#invoke(message);
  }

  #invoke(message: ReturnType<typeof fromBinary>) {
    const route = this.#route;
    // Own properties, as Connect makes them: interceptors may spread the request
    // (`@connectrpc/validate` does), so `signal` is an own enumerable accessor too. It is defined
    // with one shared getter, never as a getter in this literal: a literal with a getter is a
    // dictionary-mode object with a new closure per call, and with it the whole call (its stream,
    // headers, message) survived young-generation GCs until a full GC. Measured at 4k calls/s:
    // about 2 MB promoted per scavenge with the literal getter, 0.1-0.25 MB without (issue 7).
    const req = {
      stream: false,
      service: route.method.parent,
      method: route.method,
      requestMethod: "POST",
      url: route.url(this.#headers[":authority"]),
      header: this.requestHeader,
      contextValues: this.#values,
      message,
      [CALL]: this,
    } as Omit<CallRequest, "signal"> as CallRequest;
    Object.defineProperty(req, "signal", SIGNAL_PROPERTY);
    let pending: Promise<UnaryResponse>;
    try {
      pending = route.next(req);
    } catch (err) {
      // An interceptor may throw before it returns a promise (validation does).
      pending = Promise.reject(err);
    }
    pending.then(
      (res) => this.#succeed(res),
      (err) => this.#fail(toConnectError(err)),
    );
  }

  /** The context the handler sees, merged with the request as the interceptors left it. */
  handlerContext(req: UnaryRequest): HandlerContext {
    return new FastHandlerContext(req, this);
  }

  timeoutMs(): () => number | undefined {
    const deadline = this.#deadline;
    return deadline === undefined ? noTimeout : () => deadline - Date.now();
  }

  #succeed(res: UnaryResponse) {
    if (this.#responded) return;
    let bytes: Uint8Array;
    try {
      bytes = toBinary(this.#route.output, res.message);
    } catch (e) {
      return this.#fail(
        new ConnectError(`serialize binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal),
      );
    }
    const frame = frameMessage(bytes);
    const trailer = headersToNode(res.trailer, { "grpc-status": "0" });
    this.#send(headersToNode(res.header, responseHead()), frame, trailer);
  }

  #fail(err: ConnectError) {
    if (this.#responded) return;
    const trailers = new LazyHeaders(this.responseTrailer.writeTo({}));
    setTrailerStatus(trailers, err);
    this.#send(headersToNode(this.responseHeader, responseHead()), undefined, trailers.writeTo({}));
  }

  #send(header: Record<string, string>, frame: Buffer | undefined, trailer: Record<string, string>) {
    this.#responded = true;
    if (this.#timer) clearTimeout(this.#timer);
    const stream = this.#stream;
    if (stream.destroyed || stream.closed) return;
    // Whatever the client still sends is not needed any more (a refused or oversized call).
    if (!stream.readableEnded) stream.resume();
    this.#trailer = trailer;
    try {
      stream.respond(header, { waitForTrailers: true });
      stream.once("wantTrailers", onWantTrailers);
      if (frame) endInSlices(stream, frame);
      else stream.end();
    } catch {
      // Invalid header values from a handler, or the stream went away meanwhile.
      stream.close(2 /* INTERNAL_ERROR */);
    }
    // The call is complete: a signal the handler kept aborts now, as Connect's does.
    this.#abort(undefined, false);
  }

  onWantTrailers() {
    try {
      this.#stream.sendTrailers(this.#trailer ?? {});
    } catch {
      this.#stream.close(2 /* INTERNAL_ERROR */);
    }
  }
}

/**
 * The handler's context. `signal` is a getter on the prototype (the controller is made only if
 * the handler reads it), so a copy made with object spread would lack it: pass the context on
 * as it is.
 */
class FastHandlerContext implements HandlerContext {
  readonly method: DescMethod;
  readonly service: UnaryRequest["service"];
  readonly requestMethod = "POST";
  readonly protocolName = "grpc";
  readonly url: string;
  readonly timeoutMs: () => number | undefined;
  readonly requestHeader: Headers;
  readonly responseHeader: Headers;
  readonly responseTrailer: Headers;
  readonly values: ContextValues;
  readonly #req: UnaryRequest;

  constructor(req: UnaryRequest, call: UnaryCall) {
    this.#req = req;
    this.method = req.method;
    this.service = req.service;
    this.url = req.url;
    this.timeoutMs = call.timeoutMs();
    this.requestHeader = req.header;
    this.responseHeader = call.responseHeader;
    this.responseTrailer = call.responseTrailer;
    this.values = req.contextValues;
  }

  get signal(): AbortSignal {
    return this.#req.signal;
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === "function";
}

/**
 * `ContextValues` as Connect's `createContextValues` makes them (values are symbol-keyed own
 * properties), with the methods on a prototype instead of three new closures per call.
 */
class CallValues implements ContextValues {
  get<T>(key: ContextKey<T>): T {
    const self = this as unknown as Record<symbol, T>;
    return key.id in self ? (self[key.id] as T) : key.defaultValue;
  }
  set<T>(key: ContextKey<T>, value: T): this {
    (this as unknown as Record<symbol, T>)[key.id] = value;
    return this;
  }
  delete(key: ContextKey<unknown>): this {
    delete (this as unknown as Record<symbol, unknown>)[key.id];
    return this;
  }
}

/** Fresh context values for one call. */
export function createCallValues(): ContextValues {
  return new CallValues();
}

/** As Connect's handler: anything but a ConnectError is an internal error, its message hidden. */
function toConnectError(err: unknown): ConnectError {
  return err instanceof ConnectError
    ? err
    : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
}

/** What Connect's gRPC handler starts a response with; the handler's headers go on top. */
function responseHead(): Record<string, string> {
  return { ":status": "200", "content-type": RESPONSE_CONTENT_TYPE };
}
