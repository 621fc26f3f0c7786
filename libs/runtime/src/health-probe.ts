import { connect } from "node:http2";

/**
 * One `grpc.health.v1.Health/Check` over h2c, with nothing but `node:http2`: the container
 * healthcheck of every service image (`node libs/runtime/dist/health-probe.js`, see the
 * Dockerfile), where neither grpcurl nor grpc_health_probe exists. Resolves with the serving
 * status name (`SERVING`, `NOT_SERVING`, ...), or rejects with what went wrong: a refused
 * connection, a gRPC error status, a timeout.
 */
export function checkGrpcHealth(
  address: string,
  options: { service?: string; timeoutMs?: number } = {},
): Promise<string> {
  const service = Buffer.from(options.service ?? "");
  // HealthCheckRequest { string service = 1; }: tag 0x0a, length, bytes (names < 128 bytes).
  const message = service.length
    ? Buffer.concat([Buffer.from([0x0a, service.length]), service])
    : Buffer.alloc(0);
  const frame = Buffer.alloc(5 + message.length);
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, 5);
  return new Promise((resolve, reject) => {
    const session = connect(`http://${address}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer from ${address} within ${options.timeoutMs ?? 3000} ms`));
    }, options.timeoutMs ?? 3000);
    const done = (err: Error | undefined, status?: string) => {
      clearTimeout(timer);
      session.close();
      if (err) reject(err);
      else resolve(status as string);
    };
    session.on("error", (err) => done(err));
    const stream = session.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Check",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("error", (err) => done(err));
    stream.on("trailers", (trailers) => {
      const code = Number(trailers["grpc-status"] ?? 0);
      if (code !== 0) {
        done(new Error(`grpc-status ${code}: ${decodeURIComponent(String(trailers["grpc-message"] ?? ""))}`));
        return;
      }
      const body = Buffer.concat(chunks).subarray(5);
      // HealthCheckResponse { ServingStatus status = 1; }: absent means UNKNOWN (0).
      const value = body[0] === 0x08 ? (body[1] ?? 0) : 0;
      done(undefined, ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"][value] ?? `status ${value}`);
    });
    stream.end(frame);
  });
}

/** As a program: exit 0 when SERVING, 1 otherwise (the answer or the error on stderr). */
async function main(): Promise<void> {
  const address = process.argv[2] ?? `127.0.0.1:${process.env.PORT ?? "50051"}`;
  try {
    const status = await checkGrpcHealth(address, { service: process.argv[3] });
    process.stdout.write(`${status}\n`);
    process.exitCode = status === "SERVING" ? 0 : 1;
  } catch (err) {
    process.stderr.write(`health-probe: ${(err as Error).message}\n`);
    process.exitCode = 1;
  }
}

if (process.argv[1] && import.meta.url === new URL(`file://${process.argv[1]}`).href) await main();
