import net from "node:net";

/**
 * A bare HTTP/2 client for tests that play an abusive peer: it writes frames as told (more
 * streams than the server allows, a preface alone, half a header block) and records the frames
 * that come back. Node's own client would obey the server's SETTINGS and cannot do these.
 * Requests' headers are sent as HPACK literals; answers' header blocks are not decoded (only
 * their frame types, flags and stream ids are recorded).
 */
export interface RawH2Client {
  readonly socket: net.Socket;
  /** RST_STREAM frames received: stream id -> error code. */
  readonly resets: Map<number, number>;
  /** HEADERS frames received, by stream id (answers, trailers). */
  readonly headersOn: Set<number>;
  /** The GOAWAY received, if any. */
  readonly goaway: { lastStreamId: number; code: number; debug: string } | undefined;
  /** The server's SETTINGS as received (id -> value). */
  readonly settings: Map<number, number>;
  /** Whether the socket closed. */
  readonly closed: boolean;
  /** Writes the connection preface and an empty SETTINGS frame. */
  preface(): void;
  /** Opens a stream with a complete header block (END_HEADERS), optionally ending it. */
  headers(streamId: number, headers: Record<string, string>, endStream: boolean): void;
  /** Starts a header block and never finishes it (no END_HEADERS, no CONTINUATION). */
  halfHeaders(streamId: number, headers: Record<string, string>): void;
  /** A DATA frame. */
  data(streamId: number, payload: Buffer, endStream: boolean): void;
  close(): void;
}

export const FrameType = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7 } as const;
const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK integer with an `n`-bit prefix (RFC 7541 5.1), the prefix's other bits zero. */
function hpackInt(value: number, n: number): number[] {
  const max = (1 << n) - 1;
  if (value < max) return [value];
  const out = [max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function hpackString(s: string): Buffer {
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([Buffer.from(hpackInt(bytes.length, 7)), bytes]);
}

/** A header block of literals without indexing, new names (RFC 7541 6.2.2): no table state. */
export function hpackBlock(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(headers)) {
    parts.push(Buffer.from([0]), hpackString(name), hpackString(value));
  }
  return Buffer.concat(parts);
}

/** Connects from `localAddress` (another loopback address plays another client) to `port`. */
export async function connectRawH2(port: number, localAddress = "127.0.0.1"): Promise<RawH2Client> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress });
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  const resets = new Map<number, number>();
  const headersOn = new Set<number>();
  const settings = new Map<number, number>();
  let goaway: RawH2Client["goaway"];
  let closed = false;
  let pending: Buffer = Buffer.alloc(0);
  socket.on("close", () => {
    closed = true;
  });
  socket.on("data", (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    while (pending.length >= 9) {
      const length = pending.readUIntBE(0, 3);
      if (pending.length < 9 + length) break;
      const type = pending[3] as number;
      const flags = pending[4] as number;
      const streamId = pending.readUInt32BE(5) & 0x7fffffff;
      const payload = pending.subarray(9, 9 + length);
      pending = pending.subarray(9 + length);
      if (type === FrameType.RST_STREAM) resets.set(streamId, payload.readUInt32BE(0));
      else if (type === FrameType.HEADERS) headersOn.add(streamId);
      else if (type === FrameType.GOAWAY) {
        goaway = {
          lastStreamId: payload.readUInt32BE(0) & 0x7fffffff,
          code: payload.readUInt32BE(4),
          debug: payload.subarray(8).toString("latin1"),
        };
      } else if (type === FrameType.SETTINGS && (flags & 1) === 0) {
        for (let at = 0; at + 6 <= payload.length; at += 6) {
          settings.set(payload.readUInt16BE(at), payload.readUInt32BE(at + 2));
        }
        if (!socket.destroyed) socket.write(frame(FrameType.SETTINGS, 1, 0, Buffer.alloc(0))); // ACK
      } else if (type === FrameType.PING && (flags & 1) === 0) {
        if (!socket.destroyed) socket.write(frame(FrameType.PING, 1, 0, payload));
      }
    }
  });
  const write = (b: Buffer) => {
    if (!socket.destroyed) socket.write(b);
  };
  return {
    socket,
    resets,
    headersOn,
    settings,
    get goaway() {
      return goaway;
    },
    get closed() {
      return closed;
    },
    preface() {
      write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0, Buffer.alloc(0))]));
    },
    headers(streamId, headers, endStream) {
      write(frame(FrameType.HEADERS, 0x4 | (endStream ? 0x1 : 0), streamId, hpackBlock(headers)));
    },
    halfHeaders(streamId, headers) {
      write(frame(FrameType.HEADERS, 0, streamId, hpackBlock(headers)));
    },
    data(streamId, payload, endStream) {
      write(frame(FrameType.DATA, endStream ? 1 : 0, streamId, payload));
    },
    close() {
      socket.destroy();
    },
  };
}
