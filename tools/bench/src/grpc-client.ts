/**
 * The two ways the harness talks gRPC to a server outside of h2load: a typed Connect client
 * (health checks, seeding data), and a raw HTTP/2 request that replays h2load's exact request
 * bytes and headers, to prove before each measurement that what h2load sends gets grpc-status 0.
 */
import http2 from "node:http2";
import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { grpcUnframe } from "./grpc-frame.js";

/**
 * Runs `fn` with a Connect gRPC (HTTP/2) client for `service` at `baseUrl`, and closes the
 * client's connection afterwards, so no socket outlives the call.
 */
export async function withGrpcClient<S extends DescService, T>(
  baseUrl: string,
  service: S,
  fn: (client: Client<S>) => Promise<T>,
): Promise<T> {
  const sessionManager = new Http2SessionManager(baseUrl);
  try {
    const transport = createGrpcTransport({ baseUrl, sessionManager, defaultTimeoutMs: 10_000 });
    return await fn(createClient(service, transport));
  } finally {
    sessionManager.abort();
  }
}

/** The answer to one raw gRPC unary request. */
export interface RawGrpcAnswer {
  httpStatus: number;
  /** `grpc-status` from the trailers (or from the headers of a trailers-only answer). */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  /** The whole response body (framed). */
  body: Buffer;
  /** The first message of the body, unframed; `undefined` when there is none. */
  message: Uint8Array | undefined;
}

/**
 * Sends one POST over a fresh h2c connection with exactly `body` and `headers` (the bytes and
 * headers h2load sends) and collects the answer, trailers included.
 */
export function rawGrpcUnary(
  url: string,
  body: Uint8Array,
  headers: Record<string, string>,
  timeoutMs = 10_000,
): Promise<RawGrpcAnswer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const session = http2.connect(target.origin);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer from ${url} within ${timeoutMs} ms`));
    }, timeoutMs);
    const fail = (err: unknown) => {
      clearTimeout(timer);
      session.destroy();
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    session.once("error", fail);
    const stream = session.request({
      ":method": "POST",
      ":path": `${target.pathname}${target.search}`,
      "content-length": String(body.byteLength),
      ...headers,
    });
    stream.once("error", fail);
    let httpStatus = 0;
    let grpcStatus: string | undefined;
    let grpcMessage: string | undefined;
    const pick = (h: http2.IncomingHttpHeaders) => {
      const s = h["grpc-status"];
      const m = h["grpc-message"];
      if (typeof s === "string") grpcStatus = s;
      if (typeof m === "string") grpcMessage = decodeURIComponent(m);
    };
    stream.once("response", (h) => {
      httpStatus = Number(h[":status"]);
      pick(h);
    });
    stream.once("trailers", pick);
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.once("end", () => {
      clearTimeout(timer);
      session.close();
      const all = Buffer.concat(chunks);
      resolve({
        httpStatus,
        grpcStatus: grpcStatus === undefined ? undefined : Number(grpcStatus),
        grpcMessage,
        body: all,
        message: grpcUnframe(all),
      });
    });
    stream.end(body);
  });
}
