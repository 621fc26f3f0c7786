import net from "node:net";
import { type RestartableServer, startRestartableServer } from "./restartable-server.js";

/**
 * A private redis-server, for tests that stop and restart it (the machine's Redis on
 * 127.0.0.1:6379 is shared: never stop that one).
 */
export type TestRedisServer = RestartableServer;

async function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      s.destroy();
      resolve(String(d).startsWith("+PONG"));
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Starts `redis-server` (from `MESHWORK_REDIS_SERVER` or /usr/bin/redis-server) on a free loopback
 * port, without persistence, in a temporary directory.
 */
export function startRedisServer(): Promise<TestRedisServer> {
  return startRestartableServer({
    name: "redis-server",
    bin: process.env.MESHWORK_REDIS_SERVER ?? "/usr/bin/redis-server",
    args: (port, dir) => [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    ready: answersPing,
    url: (port) => `redis://127.0.0.1:${port}`,
  });
}
