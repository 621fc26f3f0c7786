import type { LogDestination } from "./logger.js";

/** The sonic-boom methods {@link gatherLines} goes in front of (its own instance properties). */
interface SonicFront {
  write(data: Buffer): boolean;
  flush(cb?: ((err?: Error) => void) | null): void;
  flushSync(): void;
  end(): void;
  minLength: number;
  /** sonic-boom's own state: ending (after `end()`) or destroyed. */
  _ending?: boolean;
  destroyed?: boolean;
  /** sonic-boom's own: starts a write of what is queued (`_bufs`, in groups measured by `_lens`). */
  _actualWrite(): void;
  _writingBuf: Buffer;
  /** sonic-boom's own: whether a write (or the file's opening) is under way; bytes queued or being written. */
  _writing: boolean;
  _len: number;
  _bufs: Buffer[][];
  _lens: number[];
}

/** UTF-8 takes at most 3 bytes per UTF-16 code unit (a surrogate pair, 2 units, takes 4). */
const MAX_UTF8_PER_UNIT = 3;

/** The bytes batches are cut from, at least (see {@link gatherLines}). */
const SLAB_BYTES = 512 * 1024;

/**
 * Encodes a batch's lines, as they come, into one byte buffer and hands that buffer to sonic-boom
 * (in its `contentMode: "buffer"`) once it holds `batchBytes` (or at a flush, a flushSync, the
 * end), in the order written. Each line is converted to UTF-8 once, straight into the batch: with
 * strings, sonic-boom measured every line (`Buffer.byteLength`), `fs.write` converted the joined
 * batch to bytes, and the write's completion converted it again (`Buffer.from`, to cut what was
 * written off): the access log's conversions were ~8% of the gateway's busy time in the bench
 * (issue 23). A buffer is made per batch (sonic-boom keeps it until its write completes). Its
 * `write`, `flush` and `flushSync` are properties of each instance, which this replaces as pino
 * itself does; its periodic flush calls `flush`, and pino's exit handler `flushSync`, so both
 * reach the lines held here.
 */
export function gatherLines(stream: LogDestination, batchBytes: number): LogDestination {
  const sonic = stream as unknown as SonicFront;
  const sonicWrite = sonic.write.bind(stream);
  // Bytes handed to sonic-boom and bytes it wrote (its `"write"` events), in order: what is not
  // written yet is the last `handed - written` bytes handed over (see ByteBatch).
  const progress = { handed: 0, written: 0 };
  stream.on("write", (n: number) => {
    progress.written += n;
  });
  const write = (data: Buffer): boolean => {
    progress.handed += data.length;
    return sonicWrite(data);
  };
  const flush = sonic.flush.bind(stream);
  const flushSync = sonic.flushSync.bind(stream);
  const end = sonic.end.bind(stream);
  const batch = new ByteBatch(batchBytes, progress);
  writeEvenWhenEmpty(sonic, stream);
  const writeQueuedAfterWrite = afterTheWrite(sonic, stream, flush);
  const handOver = (): boolean => write(batch.take());
  const gather = (line: string): boolean => {
    if (!batch.fits(line)) {
      if (batch.used > 0) handOver();
      // A line longer than a whole batch goes on its own.
      if (!batch.fits(line)) return write(Buffer.from(line));
    }
    batch.add(line);
    return batch.used < batchBytes || handOver();
  };
  (sonic as unknown as { write(line: string): boolean }).write = (line) => {
    // Once ending or destroyed, straight through: sonic-boom writes what comes while its last
    // write runs, and refuses at once what comes after (nothing is held back to be dropped).
    if (sonic._ending || sonic.destroyed) {
      if (batch.used > 0) handOver();
      return write(Buffer.from(line));
    }
    return gather(line);
  };
  sonic.flush = (cb) => {
    if (batch.used > 0) {
      try {
        handOver();
      } catch (err) {
        // A destroyed stream refuses the held lines: the caller hears of it as sonic-boom says.
        if (!cb) throw err;
        cb(err as Error);
        return;
      }
    }
    if (cb) flush(untilWritten(sonic, progress, flush, cb));
    else {
      flush(cb);
      writeQueuedAfterWrite();
    }
  };
  sonic.flushSync = () => {
    if (batch.used > 0) {
      // Handed over without starting an asynchronous write, which flushSync would not wait for.
      const minLength = sonic.minLength;
      sonic.minLength = Number.POSITIVE_INFINITY;
      try {
        handOver();
      } finally {
        sonic.minLength = minLength;
      }
    }
    flushSync();
  };
  sonic.end = () => {
    if (batch.used > 0) handOver();
    end();
  };
  return stream;
}

/**
 * A flush's callback, called once the bytes handed to sonic-boom before the flush are written.
 * sonic-boom calls a flush back at its next `"drain"`, and emits that once a write completes with
 * at most `minLength` (a batch) bytes queued, without writing them: a flush during a write was
 * called back with the lines queued behind it still in memory, left to the periodic flush, and a
 * shutdown that awaits the flush and exits raced them. Until they are written (or nothing is
 * queued or being written: `flushSync` writes without `"write"` events), the flush is made again.
 */
function untilWritten(
  sonic: SonicFront,
  progress: { readonly handed: number; readonly written: number },
  flush: (cb: (err?: Error) => void) => void,
  cb: (err?: Error) => void,
): (err?: Error) => void {
  const handed = progress.handed;
  const next = (err?: Error): void => {
    if (err || progress.written >= handed || (!sonic._writing && sonic._len === 0)) cb(err);
    else flush(next);
  };
  return next;
}

/**
 * For a flush without a callback (sonic-boom's periodic one, a caller's `flush()`) during a write:
 * once that write is done, what is queued behind it is written. sonic-boom leaves up to a batch
 * (`minLength`) queued after a write: those lines waited for the next periodic flush (up to twice
 * `flushMs` in all), and a last `flush()` left them for `flushMs`. One listener at a time, however
 * many flushes come during a long write (a pipe not read: EAGAIN, tried again every 100 ms).
 */
function afterTheWrite(sonic: SonicFront, stream: LogDestination, flush: (cb: null) => void): () => void {
  let armed = false;
  const onDrain = (): void => {
    armed = false;
    if (sonic._len > 0 && !sonic._writing && !sonic.destroyed) flush(null);
  };
  return () => {
    if (!sonic._writing || armed) return;
    armed = true;
    stream.once("drain", onDrain);
  };
}

/**
 * sonic-boom's buffer mode starts a write without checking that anything is queued (its string
 * mode writes "" then): a `flush(cb)` while its file was still opening, with nothing queued,
 * made the open's callback throw (an uncaught TypeError, the process gone). Such a write is an
 * empty one, as a flush with nothing queued is once the file is open: its callback is called.
 */
function writeEvenWhenEmpty(sonic: SonicFront, stream: LogDestination): void {
  const actualWrite = sonic._actualWrite.bind(stream);
  sonic._actualWrite = () => {
    if (sonic._writingBuf.length === 0 && sonic._bufs.length === 0) {
      sonic._bufs.push([]);
      sonic._lens.push(0);
    }
    actualWrite();
  };
}

/**
 * The UTF-8 bytes of the lines gathered for one batch. Batches are cut from a slab of several
 * (sonic-boom keeps each until it is written): an ArrayBuffer per batch doubled the GC time of
 * a micro run (300,000 access lines). The slab is used again from its beginning (a new lap) once
 * what sonic-boom has not written yet lies past the room a batch takes there, and everything of
 * the previous lap is written, so a destination that keeps up uses one slab for good. A slab
 * outlives young-generation GCs (a batch takes ~20 ms to fill at 2,000 calls/s), so every new one
 * was promoted and, once dead, freed only by a full GC: the bench's gateway (issue 23) took a new
 * 512 KiB slab every ~1,300 calls, ~400 bytes of external memory per call until a full GC.
 */
class ByteBatch {
  /** Room for a batch and the line that completes it (a longer line is measured first). */
  readonly #capacity: number;
  readonly #slabBytes: number;
  #slab = Buffer.allocUnsafeSlow(0);
  #start = 0;
  #bytes: Buffer | undefined;
  /** Bytes gathered. */
  used = 0;
  readonly #progress: { readonly handed: number; readonly written: number };
  /** `progress.handed` when this lap of the slab began: bytes before it belong to earlier laps. */
  #lapFrom = 0;
  /** Whether this lap began on a new slab (nothing of an earlier lap ahead of `#start`). */
  #fresh = true;

  constructor(batchBytes: number, progress: { readonly handed: number; readonly written: number }) {
    this.#progress = progress;
    this.#capacity = 2 * batchBytes;
    this.#slabBytes = Math.max(this.#capacity, SLAB_BYTES);
  }

  /** Whether `line` fits in what is left (measured only when it might not). */
  fits(line: string): boolean {
    const room = this.#capacity - this.used;
    return line.length * MAX_UTF8_PER_UNIT <= room || Buffer.byteLength(line) <= room;
  }

  /** Adds a line that {@link fits}. */
  add(line: string): void {
    this.#bytes ??= this.#next();
    this.used += this.#bytes.write(line, this.used);
  }

  /** The batch's bytes (sonic-boom's from now on); the next batch starts empty. */
  take(): Buffer {
    const full = (this.#bytes as Buffer).subarray(0, this.used);
    this.#start += this.used;
    this.#bytes = undefined;
    this.used = 0;
    return full;
  }

  #next(): Buffer {
    const { handed, written } = this.#progress;
    // The bytes not written yet are the lap's last ones, [#start - pending, #start) at most.
    const earlierLapWritten = written >= this.#lapFrom;
    const pending = handed - written;
    if (this.#start > 0 && earlierLapWritten && (pending === 0 || this.#start - pending >= this.#capacity)) {
      this.#newLap(false);
    } else if (this.#slab.length - this.#start < this.#capacity || !(this.#fresh || earlierLapWritten)) {
      // No room, or an earlier lap's bytes not written yet may lie ahead: a new slab.
      this.#slab = Buffer.allocUnsafeSlow(this.#slabBytes);
      this.#newLap(true);
    }
    return this.#slab.subarray(this.#start, this.#start + this.#capacity);
  }

  #newLap(fresh: boolean): void {
    this.#start = 0;
    this.#lapFrom = this.#progress.handed;
    this.#fresh = fresh;
  }
}
