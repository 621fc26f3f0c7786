import { createWriteStream, mkdirSync, rmSync, type WriteStream, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exporterEnv, type Receiver, startReceiver } from "@meshwork/tracestore";

/** The mesh's own trace receiver, as `meshctl up` runs it. */
export interface LocalTelemetry {
  /** `http://host:port`: OTLP endpoint and JSON API. */
  url: string;
  /** What every process of the mesh gets in its environment to export spans here. */
  env: Record<string, string>;
  /** Keeps a log line of a process: in the receiver's log store and in `<home>/logs/<service>.log`. */
  logLine(service: string, line: string): void;
  close(): Promise<void>;
}

/** Where `meshctl up` notes its receiver's address, for `meshctl traces`/`trace`/`logs`. */
export function receiverFile(home: string): string {
  return join(home, "receiver.json");
}

/**
 * Starts the embedded OTLP/HTTP receiver on `address` (`host:port`, port 0 for a free one),
 * notes its URL in `<home>/receiver.json` and opens `<home>/logs/` for the processes' lines
 * (each run starts the files afresh).
 */
export async function startLocalTelemetry(options: {
  home: string;
  address: string;
}): Promise<LocalTelemetry> {
  const i = options.address.lastIndexOf(":");
  const host = i > 0 ? options.address.slice(0, i) : "127.0.0.1";
  const port = Number(i >= 0 ? options.address.slice(i + 1) : options.address);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--otlp takes host:port or off, not "${options.address}"`);
  }
  let receiver: Receiver;
  try {
    receiver = await startReceiver({ host, port });
  } catch (err) {
    throw new Error(
      `the trace receiver cannot listen on ${options.address} (${(err as Error).message}): pass --otlp host:port, or --otlp off`,
    );
  }
  writeFileSync(receiverFile(options.home), `${JSON.stringify({ url: receiver.url, pid: process.pid })}\n`);
  const logDir = join(options.home, "logs");
  mkdirSync(logDir, { recursive: true });
  const files = new Map<string, WriteStream>();
  return {
    url: receiver.url,
    env: exporterEnv(receiver.url),
    logLine(service, line) {
      receiver.logs.addRaw(service, line);
      let file = files.get(service);
      if (!file) {
        file = createWriteStream(join(logDir, `${service}.log`), { flags: "w" });
        files.set(service, file);
      }
      file.write(`${line}\n`);
    },
    async close() {
      await Promise.all([...files.values()].map((f) => new Promise<void>((r) => f.end(() => r()))));
      rmSync(receiverFile(options.home), { force: true });
      await receiver.close();
    },
  };
}
