import { Code, ConnectError } from "@connectrpc/connect";
import { LazyHeaders } from "./lazy-headers.js";

/**
 * What the two fast paths of unary gRPC share, the server's (`grpc-unary.ts`) and the client's
 * (`grpc-client.ts`): the 5-byte envelope of one uncompressed message, and Connect's reasons for
 * refusing a body, so that both answer exactly as Connect's own code would.
 */

/** setTimeout holds at most 2^31 - 1 ms (about 24.8 days); a longer delay fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

const COMPRESSED_FLAG = 0b00000001;

/** "input" on the server, "output" on the client, in Connect's messages. */
export type Side = "input" | "output";

export const missingMessage = (side: Side) =>
  new ConnectError(`protocol error: missing ${side} message for unary method`, Code.Unimplemented);
export const extraMessage = (side: Side) =>
  new ConnectError(`protocol error: received extra ${side} message for unary method`, Code.Unimplemented);
export const incompleteEnvelope = () =>
  new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);

/** One message in its envelope, in a buffer of its own (one write). */
export function frameMessage(bytes: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + bytes.length);
  frame[0] = 0;
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

/**
 * The one message of a unary call's (non-empty) body, or why it is refused: an incomplete
 * envelope, a second message, or a compressed one (none is ever negotiated).
 */
export function unaryMessage(body: Buffer, side: Side): Uint8Array | ConnectError {
  const received = body.byteLength;
  if (received < 5) return incompleteEnvelope();
  const end = 5 + body.readUInt32BE(1);
  if (received < end) return incompleteEnvelope();
  if (received > end) {
    const rest = received - end;
    return rest >= 5 && rest >= 5 + body.readUInt32BE(end + 1) ? extraMessage(side) : incompleteEnvelope();
  }
  if (((body[0] as number) & COMPRESSED_FLAG) !== 0) {
    // A server's answer so framed is the server's fault; a client's request, bad input.
    return side === "input"
      ? new ConnectError(
          "invalid request message: compressed (flag 1) but grpc-encoding names no compression",
          Code.InvalidArgument,
        )
      : new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
  }
  return body.subarray(5, end);
}

/** Copies `h` into a node:http2 header object (straight from the node object when lazy). */
export function headersToNode(h: Headers, target: Record<string, string>): Record<string, string> {
  if (h instanceof LazyHeaders) return h.writeTo(target);
  h.forEach((value, key) => {
    target[key] = value;
  });
  return target;
}
