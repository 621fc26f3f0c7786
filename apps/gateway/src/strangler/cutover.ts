import type { FieldDiff } from "./diff.js";

/** Where a request on a legacy route goes. */
export type Side = "legacy" | "new";

/** The run-time state of one route: who serves it, and what was seen. */
export interface RouteState {
  name: string;
  /** `GET /api/products/{id}` */
  pattern: string;
  /** 0-100: the share of users whose requests the new service answers. */
  weight: number;
  /** Requests answered by legacy also go to the new service, compared, never shown to the client. */
  shadow: boolean;
  /** Fields the comparison skips (dotted globs, see `ignored`). */
  ignore: string[];
  /** False for routes only legacy serves (no method declares them). */
  transcoded: boolean;
  /** Whether the method may be shadowed (no side effects). */
  shadowable: boolean;
}

/** Latencies of one side: the last {@link WINDOW} answers, for medians and p95. */
class Latencies {
  static readonly WINDOW = 512;
  readonly #ms: number[] = [];
  #next = 0;
  add(ms: number): void {
    if (this.#ms.length < Latencies.WINDOW) this.#ms.push(ms);
    else this.#ms[this.#next] = ms;
    this.#next = (this.#next + 1) % Latencies.WINDOW;
  }
  quantile(q: number): number | null {
    if (this.#ms.length === 0) return null;
    const sorted = [...this.#ms].sort((a, b) => a - b);
    return Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! * 100) / 100;
  }
}

/** A sampled difference between the two sides' answers to one shadowed request. */
export interface DiffSample {
  at: string;
  request: string;
  diffs: FieldDiff[];
}

/** What was seen on one route since the gateway started (or the route's counters were reset). */
export class RouteStats {
  requests = { legacy: 0, new: 0 };
  latency = { legacy: new Latencies(), new: new Latencies() };
  shadow = { compared: 0, differed: 0, failed: 0, latency: new Latencies() };
  /**
   * Requests for the new side that legacy answered because the caller's legacy session could not
   * be exchanged yet (the user not synced into users, or an email conflict): FAILED_PRECONDITION.
   */
  fallbacks = 0;
  /** Count per differing field path. */
  readonly fields = new Map<string, number>();
  /** The most recent differences, newest last ({@link SAMPLES} at most). */
  readonly samples: DiffSample[] = [];
  static readonly SAMPLES = 50;

  record(side: Side, ms: number): void {
    this.requests[side]++;
    this.latency[side].add(ms);
  }

  compared(request: string, diffs: FieldDiff[], newMs: number): void {
    this.shadow.compared++;
    this.shadow.latency.add(newMs);
    if (diffs.length === 0) return;
    this.shadow.differed++;
    for (const d of diffs) this.fields.set(d.path, (this.fields.get(d.path) ?? 0) + 1);
    this.samples.push({ at: new Date().toISOString(), request, diffs });
    if (this.samples.length > RouteStats.SAMPLES) this.samples.shift();
  }
}

/** FNV-1a, 32 bits: a stable hash of the sticky key, the same in every gateway process. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The side a user's request on a route goes to: the user's bucket (0-99, a hash of route and
 * user) against the route's weight. A user stays on one side while the weight stays; raising the
 * weight moves more buckets over and never moves a user back.
 */
export function sideOf(route: string, stickyKey: string, weight: number): Side {
  if (weight <= 0) return "legacy";
  if (weight >= 100) return "new";
  return fnv1a(`${route}\u0000${stickyKey}`) % 100 < weight ? "new" : "legacy";
}
