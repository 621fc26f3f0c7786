/**
 * gRPC length-prefixed message framing (the 5-byte prefix: one flag byte, then a big-endian
 * uint32 length), used to pre-encode request bodies for h2load and the echo server's answer.
 */

/** Frames `message` as one uncompressed gRPC message: `0x00`, 4-byte length, the bytes. */
export function grpcFrame(message: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + message.byteLength);
  frame.writeUInt8(0, 0);
  frame.writeUInt32BE(message.byteLength, 1);
  frame.set(message, 5);
  return frame;
}

/**
 * Reads the first message of a gRPC response body (uncompressed only). Returns `undefined`
 * when `body` holds no complete message (an error answer carries only trailers).
 */
export function grpcUnframe(body: Uint8Array): Uint8Array | undefined {
  if (body.byteLength < 5) return undefined;
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  if (view.getUint8(0) !== 0) throw new Error("compressed gRPC message: not supported");
  const length = view.getUint32(1);
  if (body.byteLength < 5 + length) return undefined;
  return body.subarray(5, 5 + length);
}
