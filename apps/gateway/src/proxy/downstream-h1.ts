import type http from "node:http";
import type http2 from "node:http2";
import type { Readable } from "node:stream";
import type { Downstream } from "./downstream.js";
import { onceFlushed } from "./downstream-h2.js";

/**
 * The client side over HTTP/1.1: one object per call, its methods shared. A class rather than
 * an object literal with a getter: such a literal is a dictionary-mode object with a closure of
 * its own per call, which kept calls alive through young-generation GCs (issue 7).
 */
export class H1Downstream implements Downstream {
  readonly h2 = false;
  readonly wantsTrailers = false;
  readonly headers: http2.IncomingHttpHeaders;
  readonly body: Readable;
  readonly remoteAddress: string;

  constructor(
    req: http.IncomingMessage,
    readonly res: http.ServerResponse,
  ) {
    this.headers = {
      ...req.headers,
      ":method": req.method ?? "GET",
      ":path": req.url ?? "/",
      ":authority": req.headers.host ?? "",
    };
    this.body = req;
    this.remoteAddress = req.socket.remoteAddress ?? "unknown";
  }

  get headersSent(): boolean {
    return this.res.headersSent;
  }

  respond(status: number, h: http2.OutgoingHttpHeaders, end: boolean): void {
    const plain: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(h))
      if (v !== undefined && !k.startsWith(":")) plain[k] = v as string | string[];
    this.res.writeHead(status, plain);
    if (end) this.res.end();
  }

  write(chunk: Buffer): boolean {
    return this.res.write(chunk);
  }

  get backlog(): number {
    return this.res.writableLength;
  }

  onDrain(fn: () => void): void {
    this.res.once("drain", fn);
  }

  onFlushed(fn: () => void): void {
    onceFlushed(this.res, fn);
  }

  finish(): void {
    if (!this.res.writableEnded) this.res.end();
  }

  reset(): void {
    this.res.destroy();
  }

  onGone(fn: () => void): void {
    const res = this.res;
    res.once("close", () => {
      if (!res.writableFinished) fn();
    });
  }
}
