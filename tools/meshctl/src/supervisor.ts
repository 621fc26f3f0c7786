/**
 * Keeps the mesh's processes up: a child that exits while the mesh is not stopping is started
 * again after a growing pause, and one that keeps crashing is reported and left down. A crash
 * never stops the others.
 */

/** Where one supervised child is in its life. */
export type ChildState =
  /** Spawned, not yet reported ready (`running(name)`). */
  | "starting"
  /** Ready (SERVING, or the gateway's /ready). */
  | "running"
  /** Exited unexpectedly; waiting before the next start. */
  | "backing-off"
  /** Crashed too often within the window; left down. */
  | "given-up"
  /** Asked to stop; waiting for its exit. */
  | "stopping"
  /** Exited after being asked to (or never started again). */
  | "stopped";

/** What the supervisor needs of a process: its exit (code, or signal name) and a way to signal it. */
export interface ChildHandle {
  readonly pid?: number;
  readonly exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

export interface RestartPolicy {
  /** Pause before the first restart; doubled for every further crash within the window. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** This many crashes within `windowMs` and the child is left down. */
  maxCrashes: number;
  windowMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 500,
  maxDelayMs: 10_000,
  maxCrashes: 5,
  windowMs: 60_000,
};

/** What a child looks like from outside (the status table, `meshctl status`). */
export interface ChildStatus {
  name: string;
  state: ChildState;
  pid: number | undefined;
  /** Starts after the first. */
  restarts: number;
  /** How the last process ended (exit code or signal name), if one did. */
  lastExit: number | string | undefined;
}

/** Said on every transition worth a log line. */
export type SupervisorEvent =
  | { type: "crashed"; name: string; exit: number | string; crashes: number; delayMs: number }
  | { type: "gave-up"; name: string; exit: number | string; crashes: number; windowMs: number }
  | { type: "restarted"; name: string; restarts: number; pid: number | undefined }
  | { type: "back"; name: string; restarts: number };

interface Child {
  name: string;
  spawn: () => ChildHandle;
  state: ChildState;
  handle?: ChildHandle;
  restarts: number;
  lastExit?: number | string;
  crashes: number[];
  timer?: NodeJS.Timeout;
  /** Asked to restart while running: start again once the old process has exited. */
  restartOnExit?: boolean;
}

export class Supervisor {
  readonly #children = new Map<string, Child>();
  readonly #listeners = new Set<(e: SupervisorEvent) => void>();
  readonly #changes = new Set<() => void>();
  #stopping = false;

  constructor(
    private readonly policy: RestartPolicy = DEFAULT_RESTART_POLICY,
    private readonly now: () => number = Date.now,
  ) {}

  /** Starts `name` now with `spawn`, and again with it after every crash. */
  add(name: string, spawn: () => ChildHandle): void {
    if (this.#children.has(name)) throw new Error(`${name} is supervised already`);
    const child: Child = { name, spawn, state: "starting", restarts: 0, crashes: [] };
    this.#children.set(name, child);
    this.#start(child);
    this.#changed();
  }

  /** The caller saw `name` ready (its health check): `starting` becomes `running`. */
  running(name: string): void {
    const child = this.#children.get(name);
    if (child?.state !== "starting") return;
    this.#set(child, "running");
    if (child.restarts > 0) this.#emit({ type: "back", name, restarts: child.restarts });
  }

  state(name: string): ChildState | undefined {
    return this.#children.get(name)?.state;
  }

  status(): ChildStatus[] {
    return [...this.#children.values()].map((c) => ({
      name: c.name,
      state: c.state,
      pid:
        c.state === "starting" || c.state === "running" || c.state === "stopping" ? c.handle?.pid : undefined,
      restarts: c.restarts,
      lastExit: c.lastExit,
    }));
  }

  /** Log lines: crashes, restarts, comebacks, give-ups. Returns an unsubscribe. */
  onEvent(listener: (e: SupervisorEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Any state change (to persist the status). Returns an unsubscribe. */
  onChange(listener: () => void): () => void {
    this.#changes.add(listener);
    return () => this.#changes.delete(listener);
  }

  /**
   * Stops every child (no more restarts): `signal` now, SIGKILL after `killAfterMs`. Resolves
   * with each child's last exit; a child left down keeps the exit it crashed with.
   */
  async stopAll(signal: NodeJS.Signals, killAfterMs = 15_000): Promise<Map<string, number | string>> {
    this.#stopping = true;
    const waits: Array<Promise<void>> = [];
    for (const child of this.#children.values()) {
      clearTimeout(child.timer);
      if (child.state === "backing-off") this.#set(child, "stopped");
      const handle = child.handle;
      if (!handle || (child.state !== "starting" && child.state !== "running")) continue;
      this.#set(child, "stopping");
      handle.kill(signal);
      const killer = setTimeout(() => handle.kill("SIGKILL"), killAfterMs);
      waits.push(handle.exited.then(() => clearTimeout(killer)));
    }
    await Promise.all(waits);
    return new Map([...this.#children.values()].map((c) => [c.name, c.lastExit ?? 0]));
  }

  /**
   * Stops one child on an operator's request (the console): `signal` now, SIGKILL after
   * `killAfterMs`; it stays `stopped` (no restart) until {@link restart}. Resolves on its exit.
   */
  async stop(name: string, signal: NodeJS.Signals = "SIGTERM", killAfterMs = 15_000): Promise<void> {
    const child = this.#children.get(name);
    if (!child) throw new Error(`${name} is not supervised`);
    child.restartOnExit = false;
    clearTimeout(child.timer);
    if (child.state === "backing-off" || child.state === "given-up") {
      this.#set(child, "stopped");
      return;
    }
    const handle = child.handle;
    if (!handle || (child.state !== "starting" && child.state !== "running" && child.state !== "stopping"))
      return;
    this.#set(child, "stopping");
    handle.kill(signal);
    const killer = setTimeout(() => handle.kill("SIGKILL"), killAfterMs);
    await handle.exited.finally(() => clearTimeout(killer));
  }

  /**
   * Starts one child again on an operator's request: a stopped or given-up child now (its crash
   * count forgotten), a running one once it has exited after SIGTERM.
   */
  restart(name: string): void {
    const child = this.#children.get(name);
    if (!child) throw new Error(`${name} is not supervised`);
    if (this.#stopping) return;
    if (child.state === "starting" || child.state === "running" || child.state === "stopping") {
      child.restartOnExit = true;
      if (child.state !== "stopping") {
        this.#set(child, "stopping");
        child.handle?.kill("SIGTERM");
      }
      return;
    }
    clearTimeout(child.timer);
    child.crashes = [];
    child.restarts++;
    this.#start(child);
    this.#emit({ type: "restarted", name: child.name, restarts: child.restarts, pid: child.handle?.pid });
  }

  #start(child: Child): void {
    let handle: ChildHandle;
    try {
      handle = child.spawn();
    } catch (err) {
      this.#exited(child, err instanceof Error ? err.message : String(err));
      return;
    }
    child.handle = handle;
    this.#set(child, "starting");
    void handle.exited.then((exit) => {
      if (child.handle === handle) this.#exited(child, exit);
    });
  }

  #exited(child: Child, exit: number | string): void {
    child.lastExit = exit;
    if (this.#stopping || child.state === "stopping") {
      this.#set(child, "stopped");
      if (child.restartOnExit && !this.#stopping) {
        child.restartOnExit = false;
        this.restart(child.name);
      }
      return;
    }
    const now = this.now();
    child.crashes = [...child.crashes.filter((t) => now - t < this.policy.windowMs), now];
    const crashes = child.crashes.length;
    if (crashes >= this.policy.maxCrashes) {
      this.#set(child, "given-up");
      this.#emit({ type: "gave-up", name: child.name, exit, crashes, windowMs: this.policy.windowMs });
      return;
    }
    const delayMs = Math.min(this.policy.maxDelayMs, this.policy.initialDelayMs * 2 ** (crashes - 1));
    this.#set(child, "backing-off");
    this.#emit({ type: "crashed", name: child.name, exit, crashes, delayMs });
    child.timer = setTimeout(() => {
      if (this.#stopping || child.state !== "backing-off") return;
      child.restarts++;
      this.#start(child);
      this.#emit({ type: "restarted", name: child.name, restarts: child.restarts, pid: child.handle?.pid });
    }, delayMs);
  }

  #set(child: Child, state: ChildState): void {
    if (child.state === state) return;
    child.state = state;
    this.#changed();
  }

  #changed(): void {
    for (const l of this.#changes) l();
  }

  #emit(e: SupervisorEvent): void {
    for (const l of this.#listeners) l(e);
  }
}
