import http2 from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  isMessage,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextValues,
  type Interceptor,
  type Transport,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import {
  createMethodSerializationLookup,
  createMethodUrl,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import { requestHeader, validateResponse, validateTrailer } from "@connectrpc/connect/protocol-grpc";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { frameMessage, headersToNode, MAX_TIMER_MS, unaryMessage } from "./grpc-wire.js";
import { LazyHeaders } from "./lazy-headers.js";

export interface LeanGrpcTransportOptions {
  baseUrl: string;
  sessionManager: Http2SessionManager;
  /** Serves the streaming calls (connect-node's gRPC transport on the same session manager). */
  streams: Transport;
  interceptors?: Interceptor[];
  defaultTimeoutMs?: number;
  readMaxBytes?: number;
}

const {
  NGHTTP2_CANCEL,
  NGHTTP2_REFUSED_STREAM,
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_NO_ERROR,
  NGHTTP2_STREAM_CLOSED,
  NGHTTP2_INADEQUATE_SECURITY,
  NGHTTP2_HTTP_1_1_REQUIRED,
} = http2.constants;
/** The signal of a call with neither deadline nor caller's signal: never aborted. */
const NEVER = new AbortController().signal;

/**
 * A Node error of the connection or the stream as a ConnectError, by the rules of connect-node's
 * own client (so both transports fail alike): a refused or unresolvable connection is
 * UNAVAILABLE, a reset or destroyed stream ABORTED, anything else INTERNAL.
 */
function fromNodeError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  const codes = new Set<string>();
  for (let e: unknown = err; e instanceof Error && codes.size < 16; e = e.cause) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code) codes.add(code);
  }
  const has = (...names: string[]) => names.some((n) => codes.has(n));
  const code = has(
    "ERR_STREAM_WRITE_AFTER_END",
    "ERR_STREAM_DESTROYED",
    "ERR_HTTP2_INVALID_STREAM",
    "ECONNRESET",
  )
    ? Code.Aborted
    : has("ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED")
      ? Code.Unavailable
      : Code.Internal;
  const ce = ConnectError.from(err, code);
  if (ce !== err) ce.cause = err;
  return ce;
}

/**
 * A stream reset by the peer, as gRPC maps HTTP/2 error codes (and connect-node with it);
 * undefined for NO_ERROR and STREAM_CLOSED, which say nothing about the call.
 */
function fromResetCode(rstCode: number): ConnectError | undefined {
  const code =
    rstCode === NGHTTP2_NO_ERROR || rstCode === NGHTTP2_STREAM_CLOSED
      ? undefined
      : rstCode === NGHTTP2_CANCEL
        ? Code.Canceled
        : rstCode === NGHTTP2_REFUSED_STREAM
          ? Code.Unavailable
          : rstCode === NGHTTP2_ENHANCE_YOUR_CALM
            ? Code.ResourceExhausted
            : rstCode === NGHTTP2_INADEQUATE_SECURITY || rstCode === NGHTTP2_HTTP_1_1_REQUIRED
              ? Code.PermissionDenied
              : Code.Internal;
  return code === undefined
    ? undefined
    : new ConnectError(`http/2 stream closed with error code 0x${rstCode.toString(16)}`, code);
}

/**
 * A gRPC transport whose unary calls go straight onto a `node:http2` stream: the request framed
 * in one write, the answer's bytes gathered until the stream ends, then its trailers checked.
 * connect-node's transport runs a unary call through the same async-iterable pipeline as a
 * stream, which costs several times the CPU of the call itself (`npm run bench`, "client
 * protocols"). The wire, the interceptors, the headers, deadlines and the errors (connect's own
 * header and trailer checks) are as connect-node's; streaming calls go to connect-node's
 * transport. No compression is offered, so servers answer uncompressed.
 */
export function createLeanGrpcTransport(options: LeanGrpcTransportOptions): Transport {
  const readMaxBytes = options.readMaxBytes ?? 0xffffffff;
  const lookup = serializationCache(readMaxBytes);
  const pathOf = pathCache();
  const { sessionManager } = options;
  // The interceptors wrap the call once per transport, not once per call (as connect's
  // applyInterceptors would: the first interceptor outermost).
  const call = [...(options.interceptors ?? [])].reverse().reduce<Unary>(
    (next, interceptor) => interceptor(next as never) as unknown as Unary,
    (req) => send(sessionManager, readMaxBytes, pathOf(req.url), req, lookup(req.method)),
  );
  return {
    unary: (method, callerSignal, timeoutMs, header, input, contextValues) =>
      callUnary(options, call, method, callerSignal, timeoutMs, header, input, contextValues),
    stream: (...args) => options.streams.stream(...args),
  };
}

type Unary = (
  req: UnaryRequest<DescMessage, DescMessage>,
) => Promise<UnaryResponse<DescMessage, DescMessage>>;

/** Each method's serializers, made once per transport. */
function serializationCache(readMaxBytes: number) {
  const serializers = new WeakMap<object, MethodSerializationLookup<DescMessage, DescMessage>>();
  return <I extends DescMessage, O extends DescMessage>(method: DescMethodUnary<I, O>) => {
    let s = serializers.get(method);
    if (!s) {
      s = createMethodSerializationLookup(method, undefined, undefined, {
        readMaxBytes,
        writeMaxBytes: 0xffffffff,
      }) as unknown as MethodSerializationLookup<DescMessage, DescMessage>;
      serializers.set(method, s);
    }
    return s as unknown as MethodSerializationLookup<I, O>;
  };
}

/** The request path of each method URL, parsed once (bounded: interceptors may rewrite URLs). */
function pathCache() {
  const paths = new Map<string, string>();
  return (url: string) => {
    let path = paths.get(url);
    if (path === undefined) {
      const u = new URL(url);
      path = u.pathname + u.search;
      if (paths.size >= 1024) paths.clear();
      paths.set(url, path);
    }
    return path;
  };
}

/**
 * `Transport.unary`: the call's deadline and signal, its request, the interceptors and the
 * transport's call (`call`), and the errors as connect has them.
 */
function callUnary<I extends DescMessage, O extends DescMessage>(
  options: LeanGrpcTransportOptions,
  call: Unary,
  method: DescMethodUnary<I, O>,
  callerSignal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  header: ConstructorParameters<typeof Headers>[0] | undefined,
  input: MessageInitShape<I>,
  contextValues?: ContextValues,
): Promise<UnaryResponse<I, O>> {
  const timeout = timeoutMs === undefined ? options.defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
  // The call's signal, aborted by the caller's or by the deadline. Unlike connect's
  // runUnaryCall it is not aborted when a call succeeds: that costs a DOMException a call,
  // and nothing listens to a finished call's signal.
  let signal = NEVER;
  let controller: AbortController | undefined;
  let timedOut = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const onCallerAbort = () => controller?.abort(callerSignal?.reason);
  if (timeout !== undefined || callerSignal) {
    controller = new AbortController();
    signal = controller.signal;
    if (callerSignal?.aborted) onCallerAbort();
    else callerSignal?.addEventListener("abort", onCallerAbort);
    const expire = () => {
      timedOut = true;
      controller?.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    };
    if (timeout !== undefined && timeout <= 0) expire();
    // Beyond what a Node timer holds, a deadline is as good as none.
    else if (timeout !== undefined && timeout <= MAX_TIMER_MS) timer = setTimeout(expire, timeout);
  }
  const cleanup = () => {
    if (timer !== undefined) clearTimeout(timer);
    callerSignal?.removeEventListener("abort", onCallerAbort);
  };
  const req: UnaryRequest<I, O> = {
    stream: false,
    service: method.parent,
    method,
    requestMethod: "POST",
    url: createMethodUrl(options.baseUrl, method),
    header: requestHeader(true, timeout, header),
    contextValues: contextValues ?? createContextValues(),
    message: isMessage(input, method.input) ? input : create(method.input, input),
    signal,
  };
  return (call(req as never) as Promise<UnaryResponse<I, O>>).then(
    (res) => {
      cleanup();
      return res;
    },
    (err: unknown) => {
      cleanup();
      // As connect: past the deadline, the answer is DEADLINE_EXCEEDED whatever failed.
      const e = ConnectError.from(timedOut ? signal.reason : err);
      controller?.abort(e);
      throw e;
    },
  );
}

/**
 * One unary request on its own HTTP/2 stream: the request framed in one write, the answer's bytes
 * gathered until the stream closes, then read by `unaryAnswer`. A reset, a Node error, the call's
 * signal or an answer over `readMaxBytes` fails it (once) and cancels the stream.
 */
function send<I extends DescMessage, O extends DescMessage>(
  sessionManager: Http2SessionManager,
  readMaxBytes: number,
  path: string,
  req: UnaryRequest<I, O>,
  serialization: MethodSerializationLookup<I, O>,
): Promise<UnaryResponse<I, O>> {
  const frame = frameMessage(serialization.getI(true).serialize(req.message));
  const headers = headersToNode(req.header, {});
  return new Promise<UnaryResponse<I, O>>((resolve, reject) => {
    let settled = false;
    let stream: http2.ClientHttp2Stream | undefined;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      req.signal.removeEventListener("abort", onAbort);
      if (stream && !stream.closed) stream.close(NGHTTP2_CANCEL);
      reject(ConnectError.from(err));
    };
    const onAbort = () => fail(abortError(req.signal.reason));
    if (req.signal.aborted) return onAbort();
    req.signal.addEventListener("abort", onAbort);
    sessionManager.request("POST", path, headers, {}).then(
      (s) => {
        stream = s;
        if (settled) {
          s.close(NGHTTP2_CANCEL);
          return;
        }
        let status = 0;
        let header: Headers = new LazyHeaders();
        let trailer: Headers | undefined;
        const chunks: Buffer[] = [];
        let size = 0;
        s.on("response", (h) => {
          status = Number(h[":status"] ?? 0);
          header = new LazyHeaders(h);
        });
        s.on("data", (chunk: Buffer) => {
          sessionManager.notifyResponseByteRead(s);
          size += chunk.byteLength;
          if (size > readMaxBytes + 5) return fail(tooLarge(readMaxBytes));
          chunks.push(chunk);
        });
        s.on("trailers", (t) => {
          trailer = new LazyHeaders(t);
        });
        s.on("error", (err) => fail(fromNodeError(err)));
        s.on("close", () => {
          if (settled) return;
          const reset = s.rstCode === undefined ? undefined : fromResetCode(s.rstCode);
          if (reset) return fail(reset);
          try {
            resolve(
              unaryAnswer(req, serialization, status, header, trailer ?? new LazyHeaders(), chunks, size),
            );
            settled = true;
            req.signal.removeEventListener("abort", onAbort);
          } catch (err) {
            fail(err);
          }
        });
        s.end(frame);
      },
      (err: unknown) => fail(fromNodeError(err)),
    );
  });
}

/** Why a call whose signal aborted failed: the signal's ConnectError, or CANCELED. */
function abortError(reason: unknown): ConnectError {
  return reason instanceof ConnectError
    ? reason
    : new ConnectError("the operation was aborted", Code.Canceled, undefined, undefined, reason);
}

function tooLarge(readMaxBytes: number): ConnectError {
  return new ConnectError(
    `message size is larger than configured readMaxBytes ${readMaxBytes}`,
    Code.ResourceExhausted,
  );
}

/** The answer of a closed stream: its status, its one message and its trailers checked as connect does. */
function unaryAnswer<I extends DescMessage, O extends DescMessage>(
  req: UnaryRequest<I, O>,
  serialization: MethodSerializationLookup<I, O>,
  status: number,
  header: Headers,
  trailer: Headers,
  chunks: Buffer[],
  size: number,
): UnaryResponse<I, O> {
  // A trailers-only answer carries its status in the headers.
  const { headerError } = validateResponse(status, header);
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
  let message: MessageShape<O> | undefined;
  if (body.byteLength > 0) {
    const bytes = unaryMessage(body, "output");
    if (bytes instanceof ConnectError) throw bytes;
    message = serialization.getO(true).parse(bytes) as MessageShape<O>;
  }
  validateTrailer(trailer, header);
  if (message === undefined) {
    if (headerError) throw headerError;
    throw new ConnectError(
      "protocol error: missing output message for unary method",
      trailer.has("grpc-status") ? Code.Unimplemented : Code.Unknown,
    );
  }
  if (headerError) {
    throw new ConnectError(
      "protocol error: received output message for unary method with error status",
      Code.Unknown,
    );
  }
  return { stream: false, service: req.service, method: req.method, header, message, trailer };
}
