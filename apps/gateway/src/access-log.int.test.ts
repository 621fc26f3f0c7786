import { fileURLToPath } from "node:url";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { type ManagedProcess, startService, waitFor } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ids, startUsersUpstream, type UsersUpstream } from "../test/users-upstream.js";

const main = fileURLToPath(new URL("./main.ts", import.meta.url));

/** The access lines of `child` with this request id. */
function accessLines(child: ManagedProcess, requestId: string) {
  return child.logs().filter((l) => l.msg === "access" && l.request_id === requestId);
}

/**
 * The access log is batched (a write per few KiB of lines, issue 23): a line still reaches
 * stdout within the flush interval while the gateway idles, and what it holds is written when
 * it stops on SIGTERM.
 */
describe("the gateway's batched access log", () => {
  let upstream: UsersUpstream;
  let child: ManagedProcess;
  let url: string;

  beforeAll(async () => {
    upstream = await startUsersUpstream();
    child = startService(process.execPath, ["--import", "tsx", main], {
      env: {
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "info",
        DISCOVERY: "static",
        UPSTREAMS: `users=${upstream.url}`,
      },
    });
    const listening = await child.waitForLog((l) => l.msg === "listening" && typeof l.port === "number");
    url = `http://127.0.0.1:${Number(listening.port)}`;
  }, 90_000);
  afterAll(async () => {
    await child?.stop();
    await upstream?.service.shutdown();
  });

  async function call(requestId: string): Promise<void> {
    const users = createClient(UserService, createGrpcTransport({ baseUrl: url }));
    // GetUser needs a token: answered UNAUTHENTICATED by the gateway, an access line all the same.
    const err = await users.getUser({ id: Ids.ok }, { headers: { "x-request-id": requestId } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(err?.code).toBe(Code.Unauthenticated);
  }

  it("writes a call's line within a second while the gateway idles", async () => {
    await call("access-idle");
    const answered = performance.now();
    await waitFor(() => accessLines(child, "access-idle").length === 1, {
      timeoutMs: 1_000,
      what: "the access line of a call",
    });
    expect(performance.now() - answered).toBeLessThan(1_000);
    expect(accessLines(child, "access-idle")[0]).toMatchObject({
      status: "Unauthenticated",
      protocol: "grpc",
    });
  });

  it("writes the lines it holds when it stops on SIGTERM", async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `access-stop-${i}`);
    await Promise.all(ids.map(call));
    expect(await child.stop("SIGTERM")).toBe(0);
    await waitFor(() => ids.every((id) => accessLines(child, id).length === 1), {
      timeoutMs: 2_000,
      what: "every access line",
    });
    expect(child.logs().some((l) => l.msg === "shutting down")).toBe(true);
  }, 30_000);
});
