/**
 * Passive outlier ejection, the way Envoy's `outlier_detection` does it with
 * `consecutive_gateway_failure`: an endpoint that fails this many calls in a row is left out of
 * the choice for a while, longer each time it is ejected again, and never more than a share of
 * the endpoints at once. The gateway's upstream pool and the mesh's balanced transport both keep
 * one {@link OutlierState} per endpoint and change it only through these functions.
 */
export interface OutlierPolicy {
  /** Consecutive failures (the endpoint's fault: connection errors, UNAVAILABLE...) that eject it. */
  consecutiveFailures: number;
  /** First ejection; each further ejection of the same endpoint doubles it, up to `maxEjectionMs`. */
  baseEjectionMs: number;
  maxEjectionMs: number;
  /**
   * At most this percentage of the endpoints ejected at once; one endpoint may always be (Envoy's
   * `max_ejection_percent`, which also ejects at least one host).
   */
  maxEjectedPercent: number;
}

/** Defaults for calls between services: half the endpoints at most, so one bad one of two goes. */
export const DEFAULT_OUTLIER_POLICY: OutlierPolicy = {
  consecutiveFailures: 5,
  baseEjectionMs: 1_000,
  maxEjectionMs: 30_000,
  maxEjectedPercent: 50,
};

/** What outlier ejection knows of one endpoint. */
export interface OutlierState {
  consecutiveFailures: number;
  /** Ejections so far, which double the next one; forgotten once it has been in long enough. */
  ejections: number;
  /** Not picked before this time (ms since the epoch); 0 when it never was ejected. */
  ejectedUntil: number;
}

export function newOutlierState(): OutlierState {
  return { consecutiveFailures: 0, ejections: 0, ejectedUntil: 0 };
}

export function isEjected(state: OutlierState, now: number): boolean {
  return state.ejectedUntil > now;
}

/** A call the endpoint answered: its run of failures is over. */
export function recordSuccess(state: OutlierState): void {
  state.consecutiveFailures = 0;
}

/**
 * A call that failed by the endpoint's fault. Ejects it when this ends a run of
 * `consecutiveFailures` and the share allows it (`ejectedNow` of `total` endpoints are ejected
 * already); returns how long it is ejected for, or 0. An endpoint that has been back for longer
 * than `maxEjectionMs` starts again from `baseEjectionMs`.
 */
export function recordFailure(
  state: OutlierState,
  policy: OutlierPolicy,
  now: number,
  share: { ejectedNow: number; total: number } = { ejectedNow: 0, total: 1 },
): number {
  state.consecutiveFailures++;
  if (state.consecutiveFailures < policy.consecutiveFailures) return 0;
  const allowed = Math.max(1, Math.floor((share.total * policy.maxEjectedPercent) / 100));
  if (share.ejectedNow + 1 > allowed) return 0; // no room: ejected when another comes back
  if (state.ejectedUntil > 0 && now - state.ejectedUntil > policy.maxEjectionMs) state.ejections = 0;
  const ms = Math.min(policy.maxEjectionMs, policy.baseEjectionMs * 2 ** state.ejections);
  state.ejections++;
  state.ejectedUntil = now + ms;
  state.consecutiveFailures = 0;
  return ms;
}
