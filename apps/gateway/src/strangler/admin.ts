import type http from "node:http";
import type { Strangler } from "./strangler.js";

function send(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" }).end(`${JSON.stringify(body, null, 2)}\n`);
}

function readJson(req: http.IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= 64 * 1024) chunks.push(c);
    });
    req.once("end", () => {
      if (size > 64 * 1024) return reject(new Error("the body exceeds 64 KiB"));
      const text = Buffer.concat(chunks).toString("utf8");
      if (!text) return resolve({});
      try {
        resolve(JSON.parse(text));
      } catch (err) {
        reject(new Error(`the body is not JSON: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
    req.once("error", reject);
  });
}

/**
 * The strangler's admin API, on the gateway's admin listener (loopback by default, as Envoy's):
 *
 * - `GET /strangler`: every route with its side, weight, shadow, traffic, latency and diff rate;
 * - `POST /strangler/routes/<name>` with `{"weight": 0-100, "shadow": true|false, "ignore": [...]}`
 *   (any of them): changes the route at once, no restart;
 * - `GET /strangler/routes/<name>/diffs`: the differing fields counted and the sampled differences;
 * - `DELETE /strangler/routes/<name>/diffs`: forgets the route's counters and samples.
 *
 * Returns false for paths that are not its own.
 */
export function stranglerAdmin(
  strangler: Strangler,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  path: string,
): boolean {
  if (path !== "/strangler" && !path.startsWith("/strangler/")) return false;
  const method = req.method ?? "GET";
  if (path === "/strangler") {
    if (method !== "GET") res.writeHead(405, { allow: "GET" }).end();
    else send(res, 200, strangler.status());
    return true;
  }
  const m = /^\/strangler\/routes\/([A-Za-z0-9_-]+)(\/diffs)?$/.exec(path);
  if (!m) {
    send(res, 404, { error: "not_found", message: `no admin path ${path}` });
    return true;
  }
  const name = m[1]!;
  if (m[2]) {
    if (method === "GET") {
      const d = strangler.diffs(name);
      if (d) send(res, 200, d);
      else send(res, 404, { error: "not_found", message: `no route ${name}` });
    } else if (method === "DELETE") {
      if (strangler.reset(name)) send(res, 200, { route: name, reset: true });
      else send(res, 404, { error: "not_found", message: `no route ${name}` });
    } else {
      res.writeHead(405, { allow: "GET, DELETE" }).end();
    }
    return true;
  }
  if (method === "GET") {
    const state = strangler.states.get(name);
    if (state) send(res, 200, state);
    else send(res, 404, { error: "not_found", message: `no route ${name}` });
    return true;
  }
  if (method !== "POST" && method !== "PUT") {
    res.writeHead(405, { allow: "GET, POST, PUT" }).end();
    return true;
  }
  readJson(req).then(
    (body) => {
      if (body === null || typeof body !== "object" || Array.isArray(body)) {
        send(res, 400, { error: "invalid_argument", message: "the body must be a JSON object" });
        return;
      }
      const r = strangler.update(name, body as Record<string, unknown>);
      if (r.ok) send(res, 200, r.state);
      else
        send(res, r.status, {
          error: r.status === 404 ? "not_found" : "invalid_argument",
          message: r.message,
        });
    },
    (err: Error) => send(res, 400, { error: "invalid_argument", message: err.message }),
  );
  return true;
}
