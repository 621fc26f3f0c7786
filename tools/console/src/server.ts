import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { extname, join, normalize } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  ConsoleService,
  ControlProcessRequest_Action,
  GetFlowMapResponseSchema,
  InvokeStreamResponseSchema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import type { NatsCredentials } from "@meshwork/events";
import { loadApiComments } from "./api-comments.js";
import { Explorer } from "./explorer.js";
import { flowMap } from "./flow.js";
import { MeshView, type ProcessControl } from "./mesh.js";
import { SagaView } from "./sagas.js";
import { ReceiverClient } from "./traces.js";

/** Where the console finds the mesh it shows. */
export interface ConsoleOptions {
  /** Host to bind (default 127.0.0.1: the console calls the mesh with the page's tokens). */
  host?: string;
  /** Port (default 9400; 0 for a free one). */
  port?: number;
  /** The gateway's base URL: reflection and every call from the explorer go through it. */
  gatewayUrl: string;
  /** The trace receiver's base URL (its JSON API). */
  receiverUrl: string;
  natsUrl: string;
  natsCredentials?: NatsCredentials;
  registryBucket: string;
  namespace: string;
  /** The supervisor of `meshctl up`, for stop and restart; absent in a console on its own. */
  processes?: ProcessControl;
  /** The built front end (default: `ui/` under {@link ConsoleOptions.assetsDir}). */
  uiDir?: string;
  /**
   * Where the console's build wrote its files (the front end under `ui/`, `api-comments.json`):
   * by default the package's own `dist`, found from this module. A program that bundles the
   * console into its own file (meshctl does: loaded from node_modules beside its bundle, the
   * console's modules cost `meshctl up` ~1 s of CPU before it started anything) passes the
   * package's `dist` here, since `import.meta.url` is then the bundle's.
   */
  assetsDir?: string;
}

/** A running console. */
export interface RunningConsole {
  /** `http://host:port/`. */
  url: string;
  port: number;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".json": "application/json",
};

function routes(mesh: MeshView, receiver: ReceiverClient, explorer: Explorer, sagas: SagaView) {
  return (router: ConnectRouter) =>
    router.service(ConsoleService, {
      listInstances: () => mesh.instances(),
      controlProcess: (req) => {
        if (req.action === ControlProcessRequest_Action.UNSPECIFIED) {
          throw new ConnectError("action: say STOP or RESTART", Code.InvalidArgument);
        }
        const state = mesh.control(
          req.service,
          req.action === ControlProcessRequest_Action.STOP ? "stop" : "restart",
        );
        return { processState: state };
      },
      listTraces: (req) => receiver.listTraces(req),
      getTrace: (req) => receiver.getTrace(req.traceId),
      describeApi: () => explorer.describe(),
      invoke: (req) => explorer.invoke(req),
      invokeStream: async function* (req, ctx) {
        for await (const e of explorer.invokeStream(req, ctx.signal)) {
          yield create(InvokeStreamResponseSchema, {
            event: e.end ? { case: "end", value: e.end } : { case: "messageJson", value: e.message ?? "" },
          });
        }
      },
      getResilience: () => mesh.resilience(),
      getFlowMap: async (req) => {
        const limit = req.traces > 0 ? Math.min(req.traces, 500) : 100;
        try {
          return flowMap(await receiver.recentTraces(limit));
        } catch (err) {
          return create(GetFlowMapResponseSchema, { problem: ConnectError.from(err).rawMessage });
        }
      },
      replayDeadLetter: async (req) => {
        if (req.seq <= 0n)
          throw new ConnectError("seq: a dead letter's sequence is a positive number", Code.InvalidArgument);
        return { originalSubject: await mesh.replay(req.stream, Number(req.seq)) };
      },
      listSagas: (req) => sagas.list(req),
      getSaga: (req) => sagas.get(req),
    });
}

/** Serves the built page: files under `dir`, `index.html` for any other path (client routing). */
function staticFiles(dir: string) {
  const index = join(dir, "index.html");
  return (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
      return;
    }
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://console").pathname);
    const file = normalize(join(dir, path));
    const inside = file.startsWith(dir) && existsSync(file) && extname(file) !== "";
    const target = inside ? file : index;
    if (!existsSync(target)) {
      res
        .writeHead(503, { "content-type": "text/plain; charset=utf-8" })
        .end(`the console's page is not built (${dir}): run npm run build -w @meshwork/console\n`);
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[extname(target)] ?? "application/octet-stream",
      "cache-control": target === index ? "no-cache" : "public, max-age=31536000, immutable",
      "x-content-type-options": "nosniff",
    });
    res.end(req.method === "HEAD" ? undefined : readFileSync(target));
  };
}

/**
 * Starts the console: the page and the ConsoleService (Connect, over HTTP/1.1 for the browser) on
 * one port, loopback unless told otherwise.
 */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const mesh = new MeshView({
    natsUrl: options.natsUrl,
    natsCredentials: options.natsCredentials,
    registryBucket: options.registryBucket,
    namespace: options.namespace,
    processes: options.processes,
  });
  const receiver = new ReceiverClient(options.receiverUrl.replace(/\/$/, ""));
  const assetsDir = options.assetsDir ?? fileURLToPath(new URL("../dist/", import.meta.url));
  const explorer = new Explorer(
    options.gatewayUrl.replace(/\/$/, ""),
    loadApiComments(pathToFileURL(join(assetsDir, "api-comments.json"))),
  );
  const uiDir = options.uiDir ?? join(assetsDir, "ui");
  const api = connectNodeAdapter({
    routes: routes(mesh, receiver, explorer, new SagaView(options.gatewayUrl.replace(/\/$/, ""))),
    fallback: staticFiles(normalize(uiDir)) as unknown as NonNullable<
      Parameters<typeof connectNodeAdapter>[0]["fallback"]
    >,
  });
  const server: Server = createServer(api);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 9400, options.host ?? "127.0.0.1", () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host ?? "127.0.0.1";
  return {
    url: `http://${host.includes(":") ? `[${host}]` : host}:${port}/`,
    port,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await mesh.close();
    },
  };
}
