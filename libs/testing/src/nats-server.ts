import net from "node:net";
import { type RestartableServer, startRestartableServer } from "./restartable-server.js";

/** A private nats-server with JetStream, for tests that stop and restart the broker (its store is kept across restarts). */
export type TestNatsServer = RestartableServer;

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/**
 * Starts `nats-server -js` (from `MESHWORK_NATS_SERVER` or /usr/sbin/nats-server) on a free
 * loopback port with a temporary store directory.
 */
export function startNatsServer(): Promise<TestNatsServer> {
  return startRestartableServer({
    name: "nats-server",
    bin: process.env.MESHWORK_NATS_SERVER ?? "/usr/sbin/nats-server",
    args: (port, dir) => ["-a", "127.0.0.1", "-p", String(port), "-js", "-sd", dir],
    ready: accepts,
    url: (port) => `nats://127.0.0.1:${port}`,
  });
}
