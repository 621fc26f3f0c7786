import type { Logger, Telemetry } from "@meshwork/telemetry";
import { DEFAULT_READINESS_TIMEOUT_MS } from "./config.js";
import type { GrpcUnaryFastPath } from "./grpc-unary.js";
import { type HealthRegistry, ServingStatus } from "./health.js";
import { setHeapGrowingPercent } from "./heap.js";
import type { ServiceIdentity } from "./identity/index.js";
import { createListener, type Listener, type NodeRequestHandler } from "./listener.js";
import type { ReadinessCheck, Service, ServiceOptions } from "./service.js";

/** What a service is made of, built once by `createService`. */
export interface ServiceParts {
  logger: Logger;
  telemetry: Telemetry;
  health: HealthRegistry;
  identity: ServiceIdentity;
  fast: GrpcUnaryFastPath | undefined;
  handler: NodeRequestHandler;
}

/**
 * A service's life: start (listen, prepare, wait for readiness, SERVING, announce), the periodic
 * readiness checks, and one shutdown (NOT_SERVING, withdraw, drain, hooks, telemetry, logs).
 */
export class ServiceLifecycle implements Service {
  readonly logger: Logger;
  readonly telemetry: Telemetry;
  readonly health: HealthRegistry;
  readonly identity: ServiceIdentity;
  readonly #options: ServiceOptions;
  readonly #parts: ServiceParts;
  #listener: Listener | undefined;
  #checkTimer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  /** A periodic round of readiness checks is running. */
  #checking = false;
  /** Each readiness check's call that has not settled yet. */
  readonly #pending = new Map<ReadinessCheck, Promise<void>>();
  #withdraw: (() => Promise<void>) | undefined;

  constructor(options: ServiceOptions, parts: ServiceParts) {
    this.#options = options;
    this.#parts = parts;
    ({
      logger: this.logger,
      telemetry: this.telemetry,
      health: this.health,
      identity: this.identity,
    } = parts);
    this.telemetry.meter
      .createObservableGauge("http.server.active_requests", {
        description: "Requests being served (RPCs and plain HTTP), including the scrape itself",
      })
      .addCallback((result) => result.observe(this.#listener?.inFlight ?? 0));
  }

  async start(): Promise<{ port: number; url: string }> {
    const { config } = this.#options;
    const { heapGrowingPercent } = config;
    setHeapGrowingPercent(heapGrowingPercent);
    const { fast } = this.#parts;
    this.#listener = createListener({
      limits: config.connectionLimits,
      streamHandler: fast && ((stream, headers) => fast.handle(stream, headers)),
      handler: this.#parts.handler,
    });
    const port = await this.#listener.listen(config.port, config.host);
    const url = `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`;
    this.logger.info({ port, host: config.host, url, heapGrowingPercent }, "listening");
    await this.#options.prepare?.();
    // Readiness: poll quickly until the first success, then at the configured interval.
    while (!this.#stopping && !(await this.#runChecks())) {
      await new Promise((r) => setTimeout(r, 200));
    }
    if (!this.#stopping) await this.#becomeServing(port);
    return { port, url };
  }

  shutdown(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #becomeServing(port: number): Promise<void> {
    const { config, announce } = this.#options;
    this.health.setAll(ServingStatus.SERVING);
    this.logger.info({ status: "SERVING" }, "health changed");
    this.#checkTimer = setInterval(() => void this.#applyChecks(), config.healthCheckIntervalMs);
    this.#checkTimer.unref();
    if (announce) {
      this.#withdraw = await announce({ host: config.host, port });
      this.logger.info({ port }, "announced");
    }
  }

  async #stop(): Promise<void> {
    const { config } = this.#options;
    const { logger } = this;
    clearInterval(this.#checkTimer);
    this.health.setAll(ServingStatus.NOT_SERVING);
    await this.#withdraw?.().catch((err) => logger.warn({ err }, "withdrawing from discovery failed"));
    logger.info({ inFlight: this.#listener?.inFlight ?? 0, graceMs: config.shutdownGraceMs }, "draining");
    this.health.close();
    await this.#listener?.close(config.shutdownGraceMs);
    try {
      await this.#options.onShutdown?.();
    } catch (err) {
      logger.error({ err }, "shutdown hook failed");
    }
    logger.info("stopped");
    await this.telemetry.shutdown();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }

  async #runChecks(): Promise<boolean> {
    const timeoutMs = this.#options.config.readinessTimeoutMs ?? DEFAULT_READINESS_TIMEOUT_MS;
    for (const c of this.#options.readiness ?? []) {
      try {
        await withDeadline(this.#callOnce(c), timeoutMs, `did not answer within ${timeoutMs} ms`);
      } catch (err) {
        this.logger.warn({ check: c.name, err: String(err) }, "readiness check failed");
        return false;
      }
    }
    return true;
  }

  /**
   * The check's call in progress, or a new one: a check that hangs past its deadline is waited
   * for again by the next round, never called a second time beside it (a pool's pings would pile
   * up on a dead socket until the pool has no connection left).
   */
  #callOnce(c: ReadinessCheck): Promise<void> {
    let call = this.#pending.get(c);
    if (!call) {
      call = Promise.resolve()
        .then(() => c.check())
        .finally(() => this.#pending.delete(c));
      this.#pending.set(c, call);
    }
    return call;
  }

  async #applyChecks(): Promise<void> {
    // One round at a time: a round still waiting (up to the timeout per check) skips this tick.
    if (this.#stopping || this.#checking) return;
    this.#checking = true;
    try {
      const ok = await this.#runChecks();
      if (this.#stopping) return;
      const was = this.health.serving;
      this.health.setAll(ok ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
      if (was !== ok) this.logger.info({ status: ok ? "SERVING" : "NOT_SERVING" }, "health changed");
    } finally {
      this.#checking = false;
    }
  }
}

/** `work`, or a rejection with `message` once `ms` have passed (the work itself is not stopped). */
function withDeadline(work: Promise<void>, ms: number, message: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}
