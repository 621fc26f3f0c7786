import { writeFileSync } from "node:fs";

/**
 * What {@link CoalescedFile} writes: the text, and the part of it that must not wait (`urgent`).
 * Two functions, not one: `urgent` is asked at every change (it decides when to write) and must
 * be cheap; `text` (the whole report, serialised) is rendered once per write, when it is written.
 */
export interface CoalescedContent {
  text(): string;
  /** When this differs from the last written one, the file is written on the next tick. */
  urgent(): string;
}

/**
 * A file rewritten after changes, in bursts: a change of the urgent part (the supervision report's
 * process ids, which the leftovers logic needs after a SIGKILL) is written on the next tick, once
 * for every change of that tick; any other change within `throttleMs` of it (health, state during a
 * start) once that time is up. The last state is always written; {@link settle} writes it now and
 * makes every later change a next-tick write.
 */
export class CoalescedFile {
  #lastUrgent: string | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly file: string,
    private readonly content: CoalescedContent,
    private throttleMs = 100,
  ) {}

  /** Something changed: schedules a write (see the class). */
  changed(): void {
    if (this.#immediate) return;
    if (this.throttleMs > 0 && this.content.urgent() === this.#lastUrgent) {
      this.#timer ??= setTimeout(() => this.flush(), this.throttleMs);
      return;
    }
    this.#immediate = setImmediate(() => this.flush());
  }

  /** Writes the current state now, and drops the pending write. */
  flush(): void {
    this.cancel();
    writeFileSync(this.file, this.content.text());
    this.#lastUrgent = this.content.urgent();
  }

  /** The start is over: writes now, and every later change on the next tick. */
  settle(): void {
    this.throttleMs = 0;
    this.flush();
  }

  /** Drops the pending write (before the file is removed). */
  cancel(): void {
    if (this.#immediate) clearImmediate(this.#immediate);
    if (this.#timer) clearTimeout(this.#timer);
    this.#immediate = undefined;
    this.#timer = undefined;
  }
}
