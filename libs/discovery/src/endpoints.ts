import { type HealthState, HealthWatch } from "./health-watch.js";
import type { RegistryWatcher } from "./registry.js";

/** One endpoint of a service as a client sees it. */
export interface EndpointState {
  service: string;
  /** `http://host:port`. */
  url: string;
  /** From the registry; absent for a static endpoint. */
  instanceId?: string;
  source: "registry" | "static";
  health: HealthState;
}

export interface EndpointTrackerOptions {
  /** Instances come and go with the registry... */
  registry?: RegistryWatcher;
  /** ...and these are always there (by service short name): `{ users: ["http://127.0.0.1:50051"] }`. */
  static?: Readonly<Record<string, readonly string[]>>;
  /**
   * Follow each endpoint's `grpc.health.v1` status and offer only SERVING ones (default true;
   * false trusts every endpoint, for servers without the health service).
   */
  healthCheck?: boolean;
  /** How often registry expiry (a missed heartbeat is not an event) is looked for; default 500 ms. */
  sweepMs?: number;
}

/** The live endpoint sets of every service a process calls. */
export interface EndpointTracker {
  /** Every known endpoint of `service`, healthy or not. */
  all(service: string): readonly EndpointState[];
  /** The endpoints calls may go to: SERVING (or every one when health checks are off). */
  healthy(service: string): readonly EndpointState[];
  /** Services with at least one endpoint known. */
  services(): string[];
  /**
   * Resolves once every known endpoint's health is known (SERVING or NOT_SERVING), or after
   * `timeoutMs`: a gateway starting up waits for this before it says it is ready, as Envoy
   * warms a cluster with its first health checks.
   */
  settled(timeoutMs: number): Promise<void>;
  /** Called when a service's set or an endpoint's health changes. Returns an unsubscribe. */
  onChange(listener: (service: string) => void): () => void;
  close(): void;
}

function urlOf(address: string): string {
  return `http://${address}`;
}

/**
 * Keeps, per service, the endpoints from the registry (added and removed as instances register,
 * deregister or stop heartbeating) and from static configuration, each with its health followed
 * over a `grpc.health.v1` Watch stream.
 */
export function trackEndpoints(options: EndpointTrackerOptions): EndpointTracker {
  return new EndpointTable(options);
}

type TrackedEndpoint = EndpointState & { watch?: HealthWatch };

class EndpointTable implements EndpointTracker {
  readonly #options: EndpointTrackerOptions;
  readonly #checkHealth: boolean;
  readonly #byService = new Map<string, Map<string, TrackedEndpoint>>();
  readonly #listeners = new Set<(service: string) => void>();
  // The healthy set is read on every call; it is rebuilt only after a change.
  readonly #healthyCache = new Map<string, readonly EndpointState[]>();
  readonly #unsubscribe: (() => void) | undefined;
  readonly #sweep: NodeJS.Timeout | undefined;

  constructor(options: EndpointTrackerOptions) {
    this.#options = options;
    this.#checkHealth = options.healthCheck ?? true;
    for (const [service, urls] of Object.entries(options.static ?? {})) {
      for (const url of urls) this.#add(service, url, "static");
    }
    this.#unsubscribe = options.registry?.onChange((service) => this.#sync(service));
    this.#syncAll();
    this.#sweep = options.registry ? setInterval(() => this.#syncAll(), options.sweepMs ?? 500) : undefined;
    this.#sweep?.unref();
  }

  all(service: string): readonly EndpointState[] {
    return [...(this.#byService.get(service)?.values() ?? [])];
  }

  healthy(service: string): readonly EndpointState[] {
    let list = this.#healthyCache.get(service);
    if (!list) {
      list = [...(this.#byService.get(service)?.values() ?? [])].filter((e) => e.health === "SERVING");
      this.#healthyCache.set(service, list);
    }
    return list;
  }

  services(): string[] {
    return [...this.#byService].filter(([, set]) => set.size > 0).map(([s]) => s);
  }

  onChange(listener: (service: string) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  settled(timeoutMs: number): Promise<void> {
    const unknown = () =>
      [...this.#byService.values()].some((set) => [...set.values()].some((e) => e.health === "UNKNOWN"));
    if (!unknown()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve();
      };
      const check = () => {
        if (!unknown()) done();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.#listeners.add(check);
    });
  }

  close(): void {
    this.#unsubscribe?.();
    clearInterval(this.#sweep);
    for (const set of this.#byService.values()) for (const e of set.values()) e.watch?.close();
    this.#byService.clear();
  }

  #notify(service: string): void {
    this.#healthyCache.delete(service);
    for (const l of this.#listeners) l(service);
  }

  #add(service: string, url: string, source: EndpointState["source"], instanceId?: string): boolean {
    let set = this.#byService.get(service);
    if (!set) {
      set = new Map();
      this.#byService.set(service, set);
    }
    if (set.has(url)) return false;
    const e: TrackedEndpoint = {
      service,
      url,
      instanceId,
      source,
      health: this.#checkHealth ? "UNKNOWN" : "SERVING",
    };
    if (this.#checkHealth) {
      e.watch = new HealthWatch(url, (state) => {
        e.health = state;
        this.#notify(service);
      });
    }
    set.set(url, e);
    return true;
  }

  /** Brings one service's registry endpoints in line with the watcher's live instances. */
  #sync(service: string): void {
    const registry = this.#options.registry;
    if (!registry) return;
    const live = new Map(registry.instances(service).map((r) => [urlOf(r.address), r]));
    let changed = false;
    for (const [url, r] of live) changed = this.#add(service, url, "registry", r.instanceId) || changed;
    const set = this.#byService.get(service);
    for (const [url, e] of set ?? []) {
      if (e.source === "registry" && !live.has(url)) {
        e.watch?.close();
        set?.delete(url);
        changed = true;
      }
    }
    if (changed) this.#notify(service);
  }

  #syncAll(): void {
    const registered = this.#options.registry?.all().map((r) => r.service) ?? [];
    for (const s of new Set([...this.#byService.keys(), ...registered])) this.#sync(s);
  }
}
