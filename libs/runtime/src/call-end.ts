/**
 * How a transport tells interceptors that a call ended early (deadline passed, client gone)
 * without an `AbortSignal`: a request may carry, under {@link EARLY_END_SOURCE}, an object whose
 * `earlyEnd()` returns a promise rejected with the reason. The gRPC unary fast path does (its
 * signal would build a DOMException at the end of every call); the deadline interceptor reads
 * it. Neither needs to know the other.
 */

/** The key of a request's early-end source (the fast path's call object sits under it). */
export const EARLY_END_SOURCE = Symbol("meshwork.fastCall");

/** What a request carries under {@link EARLY_END_SOURCE}. */
export interface EarlyEndSource {
  /** Rejects with the reason when the call ends before its answer; never settles otherwise. */
  earlyEnd(): Promise<never>;
}

/** The early end of `req`'s call, or `undefined` when its transport reports none this way. */
export function callEarlyEnd(req: object): Promise<never> | undefined {
  return (req as { [EARLY_END_SOURCE]?: EarlyEndSource })[EARLY_END_SOURCE]?.earlyEnd();
}
