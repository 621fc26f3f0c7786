import { Code } from "@connectrpc/connect";
import { codeToHttpStatus, codeToString } from "@connectrpc/connect/protocol-connect";

/** The RPC protocol of a request, told by its content type. */
export type Protocol = "grpc" | "grpc-web" | "connect" | "connect-stream";

export function protocolOf(contentType: string | undefined): Protocol {
  const ct = contentType ?? "";
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  if (ct.startsWith("application/connect+")) return "connect-stream";
  return "connect";
}

/** An answer made by the gateway itself (no upstream involved), in the client's protocol. */
export interface ErrorAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

/**
 * UNIMPLEMENTED, UNAVAILABLE, DEADLINE_EXCEEDED... as the client's protocol carries them:
 * gRPC and gRPC-Web as a trailers-only answer (HTTP 200, `grpc-status` in the headers), Connect
 * unary as an HTTP status with a JSON error body, Connect streaming as an end-of-stream message.
 */
export function errorAnswer(
  protocol: Protocol,
  contentType: string | undefined,
  code: Code,
  message: string,
): ErrorAnswer {
  switch (protocol) {
    case "grpc":
    case "grpc-web":
      return {
        status: 200,
        headers: {
          "content-type":
            contentType ?? (protocol === "grpc" ? "application/grpc" : "application/grpc-web+proto"),
          "grpc-status": String(code),
          "grpc-message": grpcMessage(message),
        },
        body: undefined,
      };
    case "connect-stream": {
      const json = Buffer.from(JSON.stringify({ error: { code: codeToString(code), message } }));
      const frame = Buffer.alloc(5 + json.length);
      frame[0] = 0b10; // end-of-stream
      frame.writeUInt32BE(json.length, 1);
      json.copy(frame, 5);
      return {
        status: 200,
        headers: { "content-type": contentType ?? "application/connect+json" },
        body: frame,
      };
    }
    case "connect":
      return {
        status: codeToHttpStatus(code),
        headers: { "content-type": "application/json" },
        body: Buffer.from(JSON.stringify({ code: codeToString(code), message })),
      };
  }
}

/**
 * `grpc-message` as the gRPC spec encodes it: UTF-8, with bytes outside printable ASCII and `%`
 * percent-encoded (so `/` stays `/` for clients that decode only what the spec requires).
 */
export function grpcMessage(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

export { Code };
