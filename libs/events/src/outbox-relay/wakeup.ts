/**
 * The relay's pause between turns: `sleep(ms)` ends early when `notify()` is called (a NOTIFY
 * from a committed outbox write) or when the relay stops; a notification that arrives while a
 * turn runs is kept, so the next sleep returns at once.
 */
export class Wakeup {
  #pending = false;
  #wake: (() => void) | undefined;

  /** Call at the start of a turn: what arrives from now on wakes the next sleep. */
  clear(): void {
    this.#pending = false;
  }

  notify(): void {
    this.#pending = true;
    this.#wake?.();
  }

  /** Ends the sleep in progress, if any (used on stop). */
  interrupt(): void {
    this.#wake?.();
  }

  sleep(ms: number, running: () => boolean): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.#pending || !running()) return resolve();
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
