import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";

/** `SERVING`, `NOT_SERVING`, ... or `DOWN` when nothing answers at `address`. */
export async function checkHealth(address: string, timeoutMs = 1_000): Promise<string> {
  const client = createClient(
    Health,
    createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "1.1", useBinaryFormat: true }),
  );
  try {
    const res = await client.check({ service: "" }, { timeoutMs });
    return HealthCheckResponse_ServingStatus[res.status];
  } catch {
    return "DOWN";
  }
}

/** `LIVE` when the gateway's admin `/ready` (at `admin`, host:port) answers 200; else `STARTING`. */
export async function gatewayReady(admin: string, timeoutMs = 1_000): Promise<string> {
  try {
    const res = await fetch(`http://${admin}/ready`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.status === 200 ? "LIVE" : "STARTING";
  } catch {
    return "DOWN";
  }
}

/** `SERVING` once the legacy monolith answers `GET /healthz` at `address` (`host:port`). */
export async function legacyHealth(address: string, timeoutMs = 1_000): Promise<string> {
  try {
    const res = await fetch(`http://${address}/healthz`, { signal: AbortSignal.timeout(timeoutMs) });
    return res.status === 200 ? "SERVING" : "NOT_SERVING";
  } catch {
    return "DOWN";
  }
}
