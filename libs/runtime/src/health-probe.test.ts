import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createLogger } from "@meshwork/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkGrpcHealth } from "./health-probe.js";
import { createService, type Service } from "./service.js";
import { testRuntimeConfig } from "./testing.js";

const probe = fileURLToPath(new URL("../dist/health-probe.js", import.meta.url));

/** Runs the probe as the container does, asynchronously (the server answers in this process). */
function runProbe(args: string[], env: Record<string, string> = {}) {
  return new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [probe, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ status: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
    );
  });
}

describe("the container health probe (grpc.health.v1 over node:http2)", () => {
  let service: Service;
  let address = "";
  beforeAll(async () => {
    service = createService({
      name: "users",
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      logger: createLogger({ service: "users", level: "silent" }),
      routes() {},
    });
    address = new URL((await service.start()).url).host;
  });
  afterAll(async () => {
    await service?.shutdown();
  });

  it("reads SERVING for the server and a named service, and a gRPC error for an unknown one", async () => {
    expect(await checkGrpcHealth(address)).toBe("SERVING");
    expect(await checkGrpcHealth(address, { service: "meshwork.users.v1.UserService" })).toBe("SERVING");
    await expect(checkGrpcHealth(address, { service: "no.such.Service" })).rejects.toThrow(/grpc-status 5/);
  });

  it("as a program, exits 0 when SERVING and 1 (saying why) when nothing answers", async () => {
    const ok = await runProbe([address]);
    expect(ok.stdout).toBe("SERVING\n");
    expect(ok.status).toBe(0);
    const port = Number(address.split(":")[1]);
    await service.shutdown();
    const down = await runProbe([], { PORT: String(port) });
    expect(down.status).toBe(1);
    expect(down.stderr).toMatch(/^health-probe: .*ECONNREFUSED/);
  });
});
