import { randomUUID } from "node:crypto";
import type { Interceptor } from "@connectrpc/connect";
import { connectNats } from "@meshwork/events";
import { buildCommit, type ClientProtocol, versionWithCommit } from "@meshwork/runtime";
import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Meter } from "@opentelemetry/api";
import type { DiscoveryConfig } from "./config.js";
import { type EndpointTracker, trackEndpoints } from "./endpoints.js";
import type { OutlierPolicy } from "./outliers.js";
import { type RegistryWatcher, registerInstance, watchRegistry } from "./registry.js";
import { createRecordSigner, createRecordVerifier } from "./signing.js";
import { type BalancedTransport, createBalancedTransport } from "./transport.js";

/** What a service process does with discovery: announce itself, and find the services it calls. */
export interface Discovery {
  /**
   * For `createService({ announce })`: registers this instance once it is SERVING; the returned
   * function deregisters it (at the start of shutdown). A no-op in `static` mode.
   */
  announce(where: { host: string; port: number }): Promise<() => Promise<void>>;
  /** The live endpoint sets (registry and `UPSTREAMS`), opened on first use. */
  endpoints(): Promise<EndpointTracker>;
  /** A balanced transport to `service`; see {@link createBalancedTransport}. */
  transport(
    service: string,
    options?: {
      interceptors?: Interceptor[];
      protocol?: ClientProtocol;
      defaultTimeoutMs?: number;
      /** The calling service's, for the CLIENT spans; default the one given to `createDiscovery`. */
      telemetry?: Pick<Telemetry, "tracer">;
      /** Passive outlier ejection of this service's endpoints; see {@link createBalancedTransport}. */
      outliers?: OutlierPolicy | false;
    },
  ): Promise<BalancedTransport>;
  /**
   * Whether the registry is reachable (always true in `static` mode and before the watch is
   * opened). While it is not, the last known endpoints stay in use; see {@link watchRegistry}.
   */
  registryUp(): boolean;
  /** Deregisters (if still registered), stops watching, closes the NATS connection. */
  close(): Promise<void>;
}

function advertised(config: DiscoveryConfig, host: string): string {
  if (config.advertiseHost) return config.advertiseHost;
  if (host === "0.0.0.0" || host === "::" || host === "") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

/** Where discovery reports on itself; both optional. */
export interface DiscoveryObserve {
  /** Gets one warning when the registry becomes unreachable and one line when it is back (default: a logger of its own). */
  logger?: Logger;
  /** Gets the gauge `discovery.registry.up` (`discovery_registry_up` in Prometheus): 1 reachable, 0 not. */
  meter?: Meter;
}

/** The process that uses discovery, as it announces itself. */
export interface DiscoverySelf {
  /** Its short name (`payments`): names its registry records, its NATS connection and its logs. */
  service: string;
  /** The package's version; announced with the commit as semver build metadata (`0.4.1+3f2a9c1`). */
  version?: string;
  /** The commit it was built from; default `MESHWORK_BUILD_COMMIT` (`buildCommit` of the runtime). */
  commit?: string;
  protocols?: string[];
  /** Records the CLIENT spans of calls through `transport()`; the global provider's if absent. */
  telemetry?: Pick<Telemetry, "tracer">;
}

/**
 * Discovery for one process named `service` (its short name, `payments`), from its config. NATS
 * is connected on first need (announce or endpoints), not before.
 *
 * A registry outage is not an outage of the mesh: callers keep their last known endpoints (their
 * health streams still decide which are SERVING), the outage is logged once and shows as
 * `discovery_registry_up 0`, and the endpoint sets are resynced when the registry is back.
 */
export function createDiscovery(
  config: DiscoveryConfig,
  self: DiscoverySelf,
  observe: DiscoveryObserve = {},
): Discovery {
  let nc: Promise<NatsConnection> | undefined;
  const nats = () => {
    nc ??= connectNats(config.natsUrl, `${self.service}-discovery`, config.natsCredentials);
    return nc;
  };
  let tracker: Promise<{ tracker: EndpointTracker; watcher?: RegistryWatcher }> | undefined;
  let watching: RegistryWatcher | undefined;
  observe.meter
    ?.createObservableGauge("discovery.registry.up", {
      description: "1 while the discovery registry (NATS KV) is reachable, 0 during an outage",
    })
    .addCallback((r) => r.observe(watching && !watching.up ? 0 : 1, { bucket: config.bucket }));
  const deregister = new Set<() => Promise<void>>();
  const transports: BalancedTransport[] = [];

  const endpoints = async () => {
    tracker ??= openEndpoints(config, nats, (watcher) => {
      watching = watcher;
      logRegistryStatus(watcher, config.bucket, self.service, observe.logger);
    });
    return (await tracker).tracker;
  };

  return {
    async announce(where) {
      if (config.mode !== "registry") return async () => {};
      const registration = await registerSelf(config, self, await nats(), where);
      const stop = async () => {
        deregister.delete(stop);
        await registration.stop();
      };
      deregister.add(stop);
      return stop;
    },
    endpoints,
    async transport(service, options = {}) {
      const t = createBalancedTransport({
        service,
        endpoints: await endpoints(),
        telemetry: self.telemetry,
        logger: observe.logger,
        meter: observe.meter,
        ...options,
      });
      transports.push(t);
      return t;
    },
    registryUp: () => watching?.up ?? true,
    async close() {
      for (const stop of [...deregister]) await stop();
      for (const t of transports) t.close();
      // Whatever failed to open (NATS away at start-up) has nothing to close.
      const opened = await tracker?.catch(() => undefined);
      opened?.tracker.close();
      await opened?.watcher?.stop();
      const conn = await nc?.catch(() => undefined);
      await conn?.close();
    },
  };
}

/** One warning when the registry becomes unreachable, one line when it is back. */
function logRegistryStatus(watcher: RegistryWatcher, bucket: string, service: string, given?: Logger): void {
  let logger = given;
  let downAt = 0;
  watcher.onStatus((up) => {
    logger ??= createLogger({ service });
    if (!up) {
      downAt = Date.now();
      logger.warn({ bucket }, "discovery registry unreachable; calls keep using the last known endpoints");
    } else {
      logger.info(
        { bucket, down_ms: Date.now() - downAt },
        "discovery registry reachable again; endpoints resynced",
      );
    }
  });
}

/** The endpoint sets: `UPSTREAMS`, plus the registry's watch in `registry` mode (handed to `onWatch` once ready). */
async function openEndpoints(
  config: DiscoveryConfig,
  nats: () => Promise<NatsConnection>,
  onWatch: (watcher: RegistryWatcher) => void,
): Promise<{ tracker: EndpointTracker; watcher?: RegistryWatcher }> {
  let watcher: RegistryWatcher | undefined;
  if (config.mode === "registry") {
    watcher = await watchRegistry({
      nc: await nats(),
      bucket: config.bucket,
      ttlMs: config.ttlMs,
      replicas: config.replicas,
      verify: config.trust && createRecordVerifier(config.trust),
    });
    await watcher.ready;
    onWatch(watcher);
  }
  return { tracker: trackEndpoints({ registry: watcher, static: config.upstreams }), watcher };
}

/** Registers this instance in the registry, under a fresh instance id. */
function registerSelf(
  config: DiscoveryConfig,
  self: DiscoverySelf,
  nc: NatsConnection,
  where: { host: string; port: number },
) {
  return registerInstance({
    nc,
    bucket: config.bucket,
    ttlMs: config.ttlMs,
    replicas: config.replicas,
    sign: config.signingKey && createRecordSigner(config.signingKey),
    service: self.service,
    instanceId: randomUUID(),
    address: `${advertised(config, where.host)}:${where.port}`,
    protocols: self.protocols ?? ["grpc", "connect", "grpc-web"],
    version: versionWithCommit(self.version ?? "0.0.0", self.commit ?? buildCommit()),
  });
}
