import type http2 from "node:http2";
import { Code } from "../errors.js";

/**
 * How much of a retryable call's answer is held back until its end (so that it can still be
 * retried when the upstream dies before finishing it); a larger answer is streamed as it comes.
 */
export const HELD_ANSWER_BYTES = 256 * 1024;
/** What the gateway holds back in all, over every call; past it answers are streamed as they come. */
export const HELD_TOTAL_BYTES = 64 * 1024 * 1024;

/** Bytes of answers held back, over every call in flight. */
export interface HeldTotal {
  bytes: number;
}

/** Counts bytes held for one client (its address) against that client's limit. */
export interface ClientBytes {
  /** Counts `bytes`; false (not counted) past the client's limit. */
  holdBytes(bytes: number): boolean;
  unholdBytes(bytes: number): void;
}

/**
 * The bytes of one answer held back for a possible retry, counted in the gateway's total and in
 * its client's bytes while held.
 */
export class HeldAnswer {
  #chunks: Buffer[] = [];
  #bytes = 0;
  /** The part of `#bytes` counted for the client (all of it until the client's limit is met). */
  #clientBytes = 0;

  constructor(
    readonly total: HeldTotal,
    readonly client?: ClientBytes,
    readonly limit = HELD_ANSWER_BYTES,
    readonly totalLimit = HELD_TOTAL_BYTES,
  ) {}

  get bytes(): number {
    return this.#bytes;
  }

  get chunks(): readonly Buffer[] {
    return this.#chunks;
  }

  /**
   * Holds a chunk; false once this answer (or the gateway's total, or its client's bytes) holds
   * too much to go on.
   */
  add(chunk: Buffer): boolean {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    this.total.bytes += chunk.length;
    const counted = this.client === undefined || this.client.holdBytes(chunk.length);
    if (counted) this.#clientBytes += chunk.length;
    return counted && this.#bytes <= this.limit && this.total.bytes <= this.totalLimit;
  }

  /** The held bytes as one buffer (one write downstream), no longer held; undefined when none. */
  take(): Buffer | undefined {
    if (this.#bytes === 0) return undefined;
    const chunks = this.#chunks;
    const bytes = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    this.drop();
    return bytes;
  }

  /** Lets go of the held bytes. */
  drop(): void {
    this.total.bytes -= this.#bytes;
    this.client?.unholdBytes(this.#clientBytes);
    this.#clientBytes = 0;
    this.#bytes = 0;
    this.#chunks = [];
  }
}

/**
 * Why a held answer (Connect or gRPC-Web, which carry no HTTP trailers) is not whole though its
 * stream ended: the upstream's connection may close a stream without an error code, and Node then
 * ends it as if complete. A gRPC-Web body must be whole frames ending with the trailer frame; a
 * body with a content-length must have that many bytes. Undefined when it is whole (or cannot
 * tell).
 */
export function cutShort(
  headers: http2.IncomingHttpHeaders,
  chunks: readonly Buffer[],
  length: number,
): string | undefined {
  const contentType = String(headers["content-type"] ?? "");
  if (contentType.startsWith("application/grpc-web")) {
    if (contentType.startsWith("application/grpc-web-text")) return undefined; // base64: not parsed
    if (length === 0 && headers["grpc-status"] !== undefined) return undefined; // status in headers
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, length);
    let at = 0;
    let trailerFrame = false;
    while (at + 5 <= body.length) {
      trailerFrame = ((body[at] as number) & 0x80) !== 0;
      at += 5 + body.readUInt32BE(at + 1);
    }
    return at === body.length && trailerFrame ? undefined : "ended the answer before its trailers";
  }
  const declared = Number(headers["content-length"]);
  if (headers["content-length"] !== undefined && Number.isFinite(declared) && declared !== length)
    return `ended the answer after ${length} of ${declared} bytes`;
  return undefined;
}

/** A finished answer's outcome as counted and logged: `OK`, a code's name, or `http_<status>`. */
export function outcomeOf(grpcStatus: string | undefined, httpStatus: number): string {
  if (grpcStatus === undefined) return `http_${httpStatus}`;
  const outcome = Code[Number(grpcStatus)] ?? grpcStatus;
  return outcome === "0" ? "OK" : outcome;
}

/** A finished answer that counts against its endpoint (and marks the call's span as failed). */
export function endpointFailed(grpcStatus: string | undefined, httpStatus: number): boolean {
  return grpcStatus === String(Code.Unavailable) || httpStatus === 503;
}
