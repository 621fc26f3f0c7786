import type { Rng } from "./rng.js";

/** The service processes chaos kills (the gateway runs inside the driver and is not killed). */
export const KILLABLE = ["users", "inventory", "payments", "orders", "notifications"] as const;
export type Killable = (typeof KILLABLE)[number];

/** One fault the driver injects. */
export type Fault =
  | { kind: "kill"; service: Killable; instance: number; downMs: number }
  | { kind: "restart-nats"; downMs: number }
  | { kind: "restart-postgres"; downMs: number }
  | { kind: "pause-consumer"; instance: number; pauseMs: number }
  | { kind: "payment-faults"; latencyMs: number; failureRate: number; forMs: number };

/** A fault and when it fires: once `atOrder` orders have been placed. */
export interface PlannedFault {
  atOrder: number;
  fault: Fault;
}

export interface PlanOptions {
  orders: number;
  faults: number;
  /** Instances per service (1 when absent). */
  replicas: Partial<Record<Killable, number>>;
  /** The consumers' ack wait: a pause lasts longer than it, so the server redelivers. */
  ackWaitMs: number;
  /** The kinds to draw from (default all). */
  kinds?: readonly Fault["kind"][];
  /**
   * The share (0-1) of the faults after the first round that restart Postgres, to reproduce
   * what follows a restart more often; absent, the plan is the seed's usual one.
   */
  postgresShare?: number;
}

/**
 * Draws the faults of a run from the seed: when each fires (an order count, so a slow machine
 * sees the same faults at the same points of the load, not at the same wall-clock times), which
 * kind, and its parameters. Every kind appears once before any repeats (when `faults` allows), so
 * even a short run meets each of them.
 */
export function planFaults(rng: Rng, o: PlanOptions): PlannedFault[] {
  const instances = (s: Killable) => o.replicas[s] ?? 1;
  const draw: Record<Fault["kind"], () => Fault> = {
    kill: () => {
      const service = rng.pick(KILLABLE);
      return {
        kind: "kill",
        service,
        instance: rng.int(0, instances(service) - 1),
        downMs: rng.int(0, 2_000),
      };
    },
    "restart-nats": () => ({ kind: "restart-nats", downMs: rng.int(200, 3_000) }),
    "restart-postgres": () => ({ kind: "restart-postgres", downMs: rng.int(200, 3_000) }),
    "pause-consumer": () => ({
      kind: "pause-consumer",
      instance: rng.int(0, instances("notifications") - 1),
      pauseMs: o.ackWaitMs + rng.int(500, 3_000),
    }),
    "payment-faults": () => ({
      kind: "payment-faults",
      latencyMs: rng.int(50, 800),
      failureRate: Math.round(rng.next() * 50) / 100,
      forMs: rng.int(1_000, 5_000),
    }),
  };
  const kinds = [...(o.kinds ?? (Object.keys(draw) as Fault["kind"][]))];
  // Shuffle the kinds for the first round, then draw freely (kills weigh double: the common case).
  const order = [...kinds];
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [order[i], order[j]] = [order[j] as Fault["kind"], order[i] as Fault["kind"]];
  }
  const weighted: Fault["kind"][] = kinds.includes("kill") ? [...kinds, "kill"] : kinds;
  const points = Array.from({ length: o.faults }, () => rng.int(1, Math.max(1, Math.floor(o.orders * 0.9))));
  points.sort((a, b) => a - b);
  const share = o.postgresShare;
  const kindAfterFirstRound = (): Fault["kind"] =>
    share !== undefined && kinds.includes("restart-postgres") && rng.next() < share
      ? "restart-postgres"
      : rng.pick(weighted);
  return points.map((atOrder, i) => ({ atOrder, fault: draw[order[i] ?? kindAfterFirstRound()]() }));
}

/** One line per fault, for the report. */
export function describeFault(f: Fault): string {
  switch (f.kind) {
    case "kill":
      return `kill -9 ${f.service}#${f.instance}, restarted after ${f.downMs} ms`;
    case "restart-nats":
      return `NATS stopped, started again after ${f.downMs} ms`;
    case "restart-postgres":
      return `Postgres stopped, started again after ${f.downMs} ms`;
    case "pause-consumer":
      return `notifications#${f.instance} SIGSTOPped for ${f.pauseMs} ms (past its ack wait), then SIGCONT`;
    case "payment-faults":
      return `payments: +${f.latencyMs} ms and ${Math.round(f.failureRate * 100)}% failures for ${f.forMs} ms`;
  }
}
