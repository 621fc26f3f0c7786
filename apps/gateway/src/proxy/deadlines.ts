/** Something with a deadline: told once it has passed, unless removed before. */
export interface HasDeadline {
  /** When the deadline passes, `performance.now()` clock. */
  readonly deadlineAt: number;
  expire(): void;
}

/**
 * The deadlines of every call in flight behind one timer, armed for the earliest of them, instead
 * of a timer per call: a call's `setTimeout` and `clearTimeout` were 2.9% of the gateway's busy
 * time in the bench (issue 23), where adding and removing a call here is a `Set` insert and
 * delete. Calls share a default deadline, so a new call's is almost never earlier than the one
 * armed, and the timer is moved only then.
 *
 * When the timer fires, every call with less than 1 ms left expires (a per-call timer of whole
 * milliseconds fired then too) and the timer is armed again for the earliest one left. The timer
 * is unref'd: an open call's connection keeps the process alive, as it did for its own timer.
 */
export class Deadlines {
  readonly #pending = new Set<HasDeadline>();
  #timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires (Infinity: none armed). */
  #armedFor = Number.POSITIVE_INFINITY;

  get size(): number {
    return this.#pending.size;
  }

  add(item: HasDeadline): void {
    this.#pending.add(item);
    if (item.deadlineAt < this.#armedFor) this.#arm(item.deadlineAt);
  }

  delete(item: HasDeadline): void {
    // The timer stays: when it fires with nothing due it re-arms for the next (or stops).
    this.#pending.delete(item);
  }

  #arm(at: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = at;
    this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(at - performance.now())));
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Number.POSITIVE_INFINITY;
    const now = performance.now();
    const due: HasDeadline[] = [];
    let next = Number.POSITIVE_INFINITY;
    for (const item of this.#pending) {
      if (item.deadlineAt - now < 1) due.push(item);
      else if (item.deadlineAt < next) next = item.deadlineAt;
    }
    for (const item of due) this.#pending.delete(item);
    if (next !== Number.POSITIVE_INFINITY) this.#arm(next);
    // After the timer is armed again: an expiry may add or remove calls.
    for (const item of due) item.expire();
  }
}
