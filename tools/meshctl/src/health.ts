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
