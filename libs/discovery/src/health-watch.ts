import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "@meshwork/contracts/grpc/health/v1/health";
import { GuardedSessionManager } from "@meshwork/runtime/internal";

/** What the gateway and clients know of one endpoint's `grpc.health.v1` status. */
export type HealthState = "SERVING" | "NOT_SERVING" | "UNKNOWN";

/**
 * Follows one endpoint's overall health with a `grpc.health.v1.Health/Watch` stream, re-opened
 * (after a short, growing pause) whenever it ends or fails; the state is UNKNOWN while there is
 * no stream. A status change is pushed by the service as it happens (drain on SIGTERM, a failed
 * readiness check), so callers stop picking the endpoint before it closes its port.
 */
export class HealthWatch {
  #state: HealthState = "UNKNOWN";
  #closed = false;
  readonly #ac = new AbortController();
  readonly #sessions: GuardedSessionManager;
  readonly #onChange: (state: HealthState) => void;

  constructor(url: string, onChange: (state: HealthState) => void) {
    this.#onChange = onChange;
    this.#sessions = new GuardedSessionManager(url);
    void this.#run(
      createClient(Health, createGrpcTransport({ baseUrl: url, sessionManager: this.#sessions })),
    );
  }

  get state(): HealthState {
    return this.#state;
  }

  #set(state: HealthState): void {
    if (state === this.#state) return;
    this.#state = state;
    if (!this.#closed) this.#onChange(state);
  }

  async #run(client: ReturnType<typeof createClient<typeof Health>>): Promise<void> {
    let pauseMs = 100;
    while (!this.#closed) {
      let failed = false;
      let heard = false;
      try {
        for await (const res of client.watch({ service: "" }, { signal: this.#ac.signal })) {
          heard = true;
          this.#set(res.status === Status.SERVING ? "SERVING" : "NOT_SERVING");
          pauseMs = 100;
        }
        failed = !heard; // ended without a word: no better than broken
      } catch (err) {
        failed = true;
        // A server without the health service is never picked: it cannot say it is ready.
        if (ConnectError.from(err).code === Code.Unimplemented) this.#set("NOT_SERVING");
      }
      if (this.#closed) return;
      // A stream the server ended cleanly keeps its last word while it is opened again (a
      // draining server says NOT_SERVING first); a broken one (connection refused or reset, the
      // instance killed) is UNKNOWN at once, so no call goes there meanwhile.
      if (failed) this.#set("UNKNOWN");
      await new Promise((r) => setTimeout(r, failed ? pauseMs : 50).unref());
      if (failed) pauseMs = Math.min(pauseMs * 2, 2_000);
    }
  }

  close(): void {
    this.#closed = true;
    this.#ac.abort();
    this.#sessions.abort();
  }
}
