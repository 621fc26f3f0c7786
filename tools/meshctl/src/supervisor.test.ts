import { spawn } from "node:child_process";
import { waitFor } from "@meshwork/testing";
import { describe, expect, it } from "vitest";
import { type ChildHandle, Supervisor, type SupervisorEvent } from "./supervisor.js";

/** A process stand-in the test ends by hand. */
class FakeChild implements ChildHandle {
  static next = 1000;
  readonly pid = FakeChild.next++;
  readonly signals: string[] = [];
  #end: (exit: number | string) => void = () => {};
  readonly exited = new Promise<number | string>((resolve) => {
    this.#end = resolve;
  });
  /** Does it die of the signal it is sent? (false: ignores SIGTERM, as a hung process would) */
  constructor(private readonly obeys = true) {}
  kill(signal: NodeJS.Signals): void {
    this.signals.push(signal);
    if (this.obeys || signal === "SIGKILL") this.#end(signal);
  }
  crash(exit: number | string = "SIGKILL"): void {
    this.#end(exit);
  }
}

const fast = { initialDelayMs: 20, maxDelayMs: 80, maxCrashes: 4, windowMs: 60_000 };

function supervise(policy = fast, now?: () => number) {
  const supervisor = new Supervisor(policy, now);
  const events: SupervisorEvent[] = [];
  supervisor.onEvent((e) => events.push(e));
  const spawned: Record<string, FakeChild[]> = {};
  const add = (name: string, make = () => new FakeChild()) =>
    supervisor.add(name, () => {
      const c = make();
      spawned[name] = [...(spawned[name] ?? []), c];
      return c;
    });
  const last = (name: string) => spawned[name]?.at(-1) as FakeChild;
  return { supervisor, events, spawned, add, last };
}

describe("Supervisor", () => {
  it("restarts a crashed child with a doubling pause, while the others stay as they are", async () => {
    const { supervisor, events, spawned, add, last } = supervise();
    add("users");
    add("inventory");
    supervisor.running("users");
    supervisor.running("inventory");
    expect(supervisor.state("inventory")).toBe("running");

    last("inventory").crash("SIGKILL");
    await Promise.resolve(); // the exit is seen on the next microtask
    expect(supervisor.state("inventory")).toBe("backing-off");
    expect(events).toContainEqual({
      type: "crashed",
      name: "inventory",
      exit: "SIGKILL",
      crashes: 1,
      delayMs: 20,
    });
    await waitFor(() => spawned.inventory?.length === 2, { what: "the restart" });
    expect(supervisor.state("inventory")).toBe("starting");
    supervisor.running("inventory");
    expect(events.at(-1)).toEqual({ type: "back", name: "inventory", restarts: 1 });

    last("inventory").crash(1);
    await waitFor(() => spawned.inventory?.length === 3);
    expect(events).toContainEqual({ type: "crashed", name: "inventory", exit: 1, crashes: 2, delayMs: 40 });
    // users never noticed.
    expect(spawned.users).toHaveLength(1);
    expect(supervisor.state("users")).toBe("running");
    expect(last("users").signals).toEqual([]);
    expect(supervisor.status().find((s) => s.name === "inventory")).toMatchObject({
      state: "starting",
      restarts: 2,
      lastExit: 1,
      pid: last("inventory").pid,
    });
  });

  it("leaves a child that crashes in a loop down after maxCrashes, and says so once", async () => {
    const { supervisor, events, spawned, add, last } = supervise();
    add("payments");
    add("orders");
    for (let i = 1; i <= 4; i++) {
      await waitFor(() => spawned.payments?.length === i, { what: `start ${i}` });
      last("payments").crash(1);
    }
    await waitFor(() => supervisor.state("payments") === "given-up");
    expect(events.filter((e) => e.type === "crashed").map((e) => e.type === "crashed" && e.delayMs)).toEqual([
      20, 40, 80,
    ]);
    expect(events.filter((e) => e.type === "gave-up")).toEqual([
      { type: "gave-up", name: "payments", exit: 1, crashes: 4, windowMs: 60_000 },
    ]);
    expect(supervisor.status().find((s) => s.name === "payments")).toMatchObject({
      state: "given-up",
      restarts: 3,
      pid: undefined,
    });
    expect(supervisor.state("orders")).toBe("starting");
    expect(spawned.payments).toHaveLength(4);
  });

  it("forgets crashes older than the window", async () => {
    let clock = 0;
    const { supervisor, events, spawned, add, last } = supervise(
      { ...fast, maxCrashes: 2, windowMs: 1_000 },
      () => clock,
    );
    add("users");
    last("users").crash(1);
    await waitFor(() => spawned.users?.length === 2);
    clock += 5_000; // long stable run
    last("users").crash(1);
    await waitFor(() => spawned.users?.length === 3);
    expect(supervisor.state("users")).toBe("starting");
    expect(events.filter((e) => e.type === "crashed").map((e) => e.type === "crashed" && e.crashes)).toEqual([
      1, 1,
    ]);
  });

  it("stops every child on stopAll, cancels a pending restart, and kills one that ignores the signal", async () => {
    const { supervisor, spawned, add, last } = supervise({ ...fast, initialDelayMs: 10_000 });
    add("users");
    add("stubborn", () => new FakeChild(false));
    add("crashed");
    last("crashed").crash(1);
    await waitFor(() => supervisor.state("crashed") === "backing-off");
    const exits = await supervisor.stopAll("SIGTERM", 50);
    expect(last("users").signals).toEqual(["SIGTERM"]);
    expect(last("stubborn").signals).toEqual(["SIGTERM", "SIGKILL"]);
    expect(Object.fromEntries(exits)).toEqual({ users: "SIGTERM", stubborn: "SIGKILL", crashed: 1 });
    expect(supervisor.status().map((s) => s.state)).toEqual(["stopped", "stopped", "stopped"]);
    expect(spawned.crashed).toHaveLength(1); // the restart never happened
  });

  it("supervises real processes: a SIGKILLed child comes back with a new pid", async () => {
    const supervisor = new Supervisor(fast);
    const start = (): ChildHandle => {
      const child = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
      return {
        pid: child.pid,
        exited: new Promise((resolve) => child.once("exit", (code, sig) => resolve(code ?? sig ?? -1))),
        kill: (s) => child.kill(s),
      };
    };
    supervisor.add("sleeper", start);
    const first = supervisor.status()[0]?.pid as number;
    process.kill(first, "SIGKILL");
    await waitFor(() => {
      const s = supervisor.status()[0];
      return s?.state === "starting" && s.pid !== first && s.restarts === 1;
    });
    expect(supervisor.status()[0]?.lastExit).toBe("SIGKILL");
    const exits = await supervisor.stopAll("SIGTERM");
    expect(exits.get("sleeper")).toBe("SIGTERM");
  });
  it("stops one child on request and keeps it down, then restarts it (and a running one after its exit)", async () => {
    const { supervisor, events, spawned, add, last } = supervise();
    add("payments");
    add("orders");
    supervisor.running("payments");
    supervisor.running("orders");

    await supervisor.stop("payments");
    expect(supervisor.state("payments")).toBe("stopped");
    expect(spawned.payments?.[0]?.signals).toEqual(["SIGTERM"]);
    // Stopped on purpose: no crash, no restart, the other child untouched.
    await new Promise((r) => setTimeout(r, 60));
    expect(spawned.payments).toHaveLength(1);
    expect(events.filter((e) => e.type === "crashed")).toEqual([]);
    expect(supervisor.state("orders")).toBe("running");

    supervisor.restart("payments");
    expect(spawned.payments).toHaveLength(2);
    expect(supervisor.state("payments")).toBe("starting");
    expect(events).toContainEqual({
      type: "restarted",
      name: "payments",
      restarts: 1,
      pid: last("payments").pid,
    });

    // A running child: SIGTERM, and a new process once the old one has exited.
    const old = last("orders");
    supervisor.restart("orders");
    expect(old.signals).toEqual(["SIGTERM"]);
    await waitFor(() => spawned.orders?.length === 2, { what: "the restarted orders process" });
    expect(supervisor.state("orders")).toBe("starting");
    expect(supervisor.status().find((c) => c.name === "orders")?.restarts).toBe(1);
  });
});
