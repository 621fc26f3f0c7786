import http2 from "node:http2";
import { Code } from "../errors.js";

const { NGHTTP2_PROTOCOL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_FRAME_SIZE_ERROR } = http2.constants;

/**
 * Whose fault a failed upstream stream is. Outlier ejection must count only what says the
 * endpoint is unhealthy (its connection failed or went away, it reset a stream for its own
 * reasons, it answered UNAVAILABLE): never what the client's request caused, or one client
 * sending bad requests would eject healthy endpoints for everyone.
 */
export type Blame =
  | { endpoint: true }
  | { endpoint: false; code: Code; httpStatus?: number; message: string };

/** What Node's HTTP/2 client throws for headers it will not send. */
const REQUEST_ERRORS = new Set([
  "ERR_HTTP2_INVALID_CONNECTION_HEADERS",
  "ERR_HTTP2_INVALID_HEADER_VALUE",
  "ERR_HTTP2_INVALID_PSEUDOHEADER",
  "ERR_HTTP2_HEADER_SINGLE_VALUE",
  "ERR_INVALID_HTTP_TOKEN",
  "ERR_INVALID_CHAR",
]);

/**
 * A request Node's HTTP/2 client refuses to send (`request()` throws): a header HTTP/2 does not
 * allow, a malformed value. The request's fault; anything else (the connection closed or went
 * away, out of stream ids) is the endpoint's.
 */
export function blameOfRequestError(err: NodeJS.ErrnoException): Blame {
  if (REQUEST_ERRORS.has(err.code ?? "")) {
    return {
      endpoint: false,
      code: Code.InvalidArgument,
      message: `request not forwardable: ${err.message}`,
    };
  }
  return { endpoint: true };
}

/**
 * A stream the endpoint reset while its connection stays up, with a code that says the request
 * broke its rules (PROTOCOL_ERROR, FRAME_SIZE_ERROR: malformed; ENHANCE_YOUR_CALM: too large,
 * e.g. headers over its limit): the request's fault, answered so and not retried. Any other
 * reset (INTERNAL_ERROR, REFUSED_STREAM, CANCEL...) or a connection that failed is the endpoint's.
 */
export function blameOfReset(rstCode: number | undefined, sessionUp: boolean): Blame {
  if (!sessionUp) return { endpoint: true };
  if (rstCode === NGHTTP2_ENHANCE_YOUR_CALM) {
    return {
      endpoint: false,
      code: Code.ResourceExhausted,
      message: "the upstream refused the request as too large (HTTP/2 ENHANCE_YOUR_CALM)",
    };
  }
  if (rstCode === NGHTTP2_PROTOCOL_ERROR || rstCode === NGHTTP2_FRAME_SIZE_ERROR) {
    return {
      endpoint: false,
      code: Code.InvalidArgument,
      message: `the upstream refused the request as malformed (HTTP/2 error ${rstCode})`,
    };
  }
  return { endpoint: true };
}

/** The size of a header list as HTTP/2 counts it (RFC 9113 6.5.2): name + value + 32 per field. */
export function headerListSize(headers: http2.OutgoingHttpHeaders): number {
  let size = 0;
  // for-in, not Object.entries: no array of pairs per call (the header objects have no inherited keys).
  for (const k in headers) {
    const v = headers[k];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) size += k.length + String(one).length + 32;
    else size += k.length + String(v).length + 32;
  }
  return size;
}
