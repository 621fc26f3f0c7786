import http from "node:http";
import http2 from "node:http2";

/** One raw exchange: what came back, or that nothing did within the time allowed. */
export interface RawAnswer {
  httpStatus: number;
  headers: Record<string, string | string[] | undefined>;
  trailers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** No complete answer within the time allowed (a hang). */
  timedOut: boolean;
  /** The stream or connection failed (reset, closed) before a complete answer. */
  error?: string;
}

/**
 * Sends one request as given (any path, headers, body bytes) over HTTP/2 (`h2: true`, on a
 * session of its own) or HTTP/1.1, and reads the whole answer, trailers included. Never throws:
 * a reset or a missing answer within `timeoutMs` is reported in the result.
 */
export function rawExchange(
  url: string,
  request: { path: string; headers: Record<string, string>; body: Uint8Array; h2: boolean },
  timeoutMs: number,
): Promise<RawAnswer> {
  return request.h2 ? h2Exchange(url, request, timeoutMs) : h1Exchange(url, request, timeoutMs);
}

function h2Exchange(
  url: string,
  r: { path: string; headers: Record<string, string>; body: Uint8Array },
  timeoutMs: number,
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const answer: RawAnswer = {
      httpStatus: 0,
      headers: {},
      trailers: {},
      body: Buffer.alloc(0),
      timedOut: false,
    };
    const chunks: Buffer[] = [];
    const session = http2.connect(url);
    let settled = false;
    const done = (patch: Partial<RawAnswer>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      resolve({ ...answer, body: Buffer.concat(chunks), ...patch });
    };
    const timer = setTimeout(() => done({ timedOut: true }), timeoutMs);
    session.on("error", (e) => done({ error: e.message }));
    const stream = session.request({ ":method": "POST", ":path": r.path, ...r.headers });
    stream.on("response", (h) => {
      answer.httpStatus = Number(h[":status"]);
      answer.headers = h;
    });
    stream.on("trailers", (t) => {
      answer.trailers = t;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => done({}));
    stream.on("error", (e) => done({ error: e.message }));
    stream.on("close", () =>
      done(answer.httpStatus ? {} : { error: `stream closed (code ${stream.rstCode})` }),
    );
    stream.end(r.body);
  });
}

function h1Exchange(
  url: string,
  r: { path: string; headers: Record<string, string>; body: Uint8Array },
  timeoutMs: number,
): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const done = (a: Partial<RawAnswer>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({
        httpStatus: 0,
        headers: {},
        trailers: {},
        timedOut: false,
        ...a,
        body: Buffer.concat(chunks),
      });
    };
    const timer = setTimeout(() => done({ timedOut: true }), timeoutMs);
    const req = http.request(
      `${url}${r.path}`,
      { method: "POST", headers: r.headers, agent: false },
      (res) => {
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          done({ httpStatus: res.statusCode ?? 0, headers: res.headers, trailers: res.trailers }),
        );
        res.on("error", (e) => done({ error: e.message }));
      },
    );
    req.on("error", (e) => done({ error: e.message }));
    req.end(r.body);
  });
}

/**
 * The status an answer carries, in whichever protocol it came: `grpc-status` in the headers or
 * trailers, in a gRPC-Web trailer frame, in a Connect end-of-stream message or a Connect unary
 * error body; else the HTTP status. `code` is the gRPC code number when there is one.
 */
export function answerStatus(a: RawAnswer): { code?: number; connectCode?: string; message: string } {
  const g = a.trailers["grpc-status"] ?? a.headers["grpc-status"];
  if (g !== undefined) {
    const m = a.trailers["grpc-message"] ?? a.headers["grpc-message"];
    return { code: Number(g), message: safeDecode(String(m ?? "")) };
  }
  // Frames: a gRPC-Web trailer frame (0x80) or a Connect end-of-stream message (0x02).
  const contentType = String(a.headers["content-type"] ?? "");
  const framed =
    contentType.startsWith("application/grpc-web") || contentType.startsWith("application/connect+");
  for (let at = 0; framed && at + 5 <= a.body.length; ) {
    const flags = a.body[at] as number;
    const len = a.body.readUInt32BE(at + 1);
    const data = a.body.subarray(at + 5, at + 5 + len);
    if (flags & 0x80) {
      const text = data.toString("latin1");
      const status = /grpc-status:[ \t]*(\d+)/i.exec(text)?.[1];
      const message = /grpc-message:[ \t]*([^\r\n]*)/i.exec(text)?.[1] ?? "";
      if (status !== undefined) return { code: Number(status), message: safeDecode(message) };
    }
    if (flags & 0x02) {
      try {
        const end = JSON.parse(data.toString()) as { error?: { code?: string; message?: string } };
        return { connectCode: end.error?.code ?? "ok", message: end.error?.message ?? "" };
      } catch {
        return { message: "unreadable end-of-stream message" };
      }
    }
    at += 5 + len;
  }
  if (a.httpStatus >= 400) {
    try {
      const e = JSON.parse(a.body.toString()) as { code?: string; message?: string };
      if (typeof e.code === "string") return { connectCode: e.code, message: e.message ?? "" };
    } catch {
      // not a Connect error body
    }
  }
  return { message: `HTTP ${a.httpStatus}` };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** True when the answer is INTERNAL in any protocol, or an HTTP 500. */
export function isInternal(a: RawAnswer): boolean {
  const s = answerStatus(a);
  return s.code === 13 || s.connectCode === "internal" || a.httpStatus === 500;
}
