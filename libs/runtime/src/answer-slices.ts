/**
 * Answers go into a stream's HTTP/2 session a slice at a time (issue 25.2). Node counts what a
 * session holds unsent (beyond the peer's flow-control window) against its memory limit
 * (`maxSessionMemory`) and, past it, refuses every new stream on that connection. Written whole,
 * a few large answers a peer does not read yet (a gateway's connection carries every client's
 * calls) refused everybody else's calls; in slices, a session holds at most one slice per
 * answering stream, the rest waiting in the answer's own buffer.
 */
import http2 from "node:http2";

/** The largest piece of an answer handed to a stream's HTTP/2 session at once. */
export const ANSWER_SLICE_BYTES = 64 * 1024;

/** Ends `stream` with `data`, each slice handed on when the peer has taken the one before. */
export function endInSlices(stream: http2.ServerHttp2Stream, data: Buffer): void {
  if (data.length <= ANSWER_SLICE_BYTES) {
    stream.end(data);
    return;
  }
  let at = 0;
  const next = (): void => {
    if (stream.destroyed) return;
    for (;;) {
      const to = Math.min(at + ANSWER_SLICE_BYTES, data.length);
      const slice = data.subarray(at, to);
      at = to;
      if (at === data.length) {
        stream.end(slice);
        return;
      }
      // A slice is larger than the stream's buffer (16 KiB), so this waits for each one.
      if (!stream.write(slice)) {
        stream.once("drain", next);
        return;
      }
    }
  };
  next();
}

type Write = (this: http2.Http2ServerResponse, chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
const write = http2.Http2ServerResponse.prototype.write as Write;

/**
 * `write` for a response of the Connect adapter (HTTP/2): a large chunk (a whole message) is
 * written as slices, which the stream hands to its session one at a time; the caller's callback
 * and its "drain" come after the last, as for one write.
 */
function writeInSlices(
  this: http2.Http2ServerResponse,
  chunk: unknown,
  encoding?: unknown,
  cb?: unknown,
): boolean {
  if (!(chunk instanceof Uint8Array) || chunk.length <= ANSWER_SLICE_BYTES)
    return write.call(this, chunk, encoding, cb);
  // A writable stream hands every chunk it buffered to `_writev` at once: without it, one by one.
  (this.stream as unknown as { _writev: unknown })._writev = null;
  const callback = typeof encoding === "function" ? encoding : cb;
  let ok = true;
  for (let at = 0; at < chunk.length; at += ANSWER_SLICE_BYTES) {
    const slice = chunk.subarray(at, at + ANSWER_SLICE_BYTES);
    ok =
      at + ANSWER_SLICE_BYTES >= chunk.length ? write.call(this, slice, callback) : write.call(this, slice);
  }
  return ok;
}

/** Makes a Connect adapter's HTTP/2 response write large messages in slices ({@link endInSlices}). */
export function sliceLargeWrites(res: http2.Http2ServerResponse): void {
  res.write = writeInSlices as http2.Http2ServerResponse["write"];
}
