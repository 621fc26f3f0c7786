import { describe, expect, it } from "vitest";
import { keptBytes } from "./kept-body.js";

describe("keptBytes", () => {
  it("copies a chunk that is a small part of a larger buffer (a socket read's), so the read is not held", () => {
    const read = Buffer.alloc(11_616, 7);
    read.write("request", 4_000);
    const chunk = read.subarray(4_000, 4_045);
    const kept = keptBytes(chunk);
    expect(kept.equals(chunk)).toBe(true);
    expect(kept.buffer.byteLength).toBeLessThan(read.buffer.byteLength);
    expect(kept.buffer).not.toBe(read.buffer);
    // Its own bytes: the read's buffer reused for the next read changes nothing kept.
    read.fill(0);
    expect(kept.subarray(0, 7).toString()).toBe("request");
  });

  it("keeps a chunk that is most of its buffer as it is (no copy of a large body)", () => {
    const chunk = Buffer.allocUnsafeSlow(16_384).fill(1).subarray(0, 16_000);
    expect(keptBytes(chunk)).toBe(chunk);
  });
});
