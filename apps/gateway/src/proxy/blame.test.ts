import http2 from "node:http2";
import { describe, expect, it } from "vitest";
import { Code } from "../errors.js";
import { blameOfRequestError, blameOfReset, headerListSize } from "./blame.js";

const C = http2.constants;

function errorWith(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

describe("blame of a failed upstream stream (outlier ejection)", () => {
  it("puts a reset for a malformed or oversized request on the request while the connection is up", () => {
    expect(blameOfReset(C.NGHTTP2_ENHANCE_YOUR_CALM, true)).toMatchObject({
      endpoint: false,
      code: Code.ResourceExhausted,
    });
    expect(blameOfReset(C.NGHTTP2_PROTOCOL_ERROR, true)).toMatchObject({
      endpoint: false,
      code: Code.InvalidArgument,
    });
    expect(blameOfReset(C.NGHTTP2_FRAME_SIZE_ERROR, true)).toMatchObject({ endpoint: false });
  });

  it("puts any other reset, and any failure with the connection gone, on the endpoint", () => {
    for (const code of [C.NGHTTP2_INTERNAL_ERROR, C.NGHTTP2_REFUSED_STREAM, C.NGHTTP2_CANCEL, undefined]) {
      expect(blameOfReset(code, true)).toEqual({ endpoint: true });
    }
    expect(blameOfReset(C.NGHTTP2_PROTOCOL_ERROR, false)).toEqual({ endpoint: true });
  });

  it("puts a request Node will not send on the request, a dead connection on the endpoint", () => {
    expect(blameOfRequestError(errorWith("ERR_HTTP2_INVALID_CONNECTION_HEADERS"))).toMatchObject({
      endpoint: false,
      code: Code.InvalidArgument,
    });
    expect(blameOfRequestError(errorWith("ERR_INVALID_CHAR"))).toMatchObject({ endpoint: false });
    expect(blameOfRequestError(errorWith("ERR_HTTP2_INVALID_SESSION"))).toEqual({ endpoint: true });
    expect(blameOfRequestError(errorWith("ERR_HTTP2_GOAWAY_SESSION"))).toEqual({ endpoint: true });
    expect(blameOfRequestError(errorWith("ERR_HTTP2_OUT_OF_STREAMS"))).toEqual({ endpoint: true });
  });

  it("sizes a header list as HTTP/2 does: name, value and 32 per field", () => {
    expect(headerListSize({ ":path": "/a", "x-b": ["1", "22"], skip: undefined })).toBe(
      5 + 2 + 32 + 4 + 32 + 5 + 32,
    );
  });
});
