/**
 * A request chunk kept for a retry, in bytes of its own when it is a small part of a larger
 * buffer. Node's HTTP/2 hands each DATA chunk over as a view into the buffer of the whole socket
 * read it came in (~11.6 KB in the bench, with many calls' frames), so a 45-byte request kept
 * until its call ended held that whole read: kept past a young-generation GC, it was promoted and
 * freed only by a full GC (the bench's gateway, issue 23: 4,864 kept chunks on 11.6 KB reads in
 * 10 s). A chunk that is most of its buffer is kept as it is (no copy of large bodies).
 */
export function keptBytes(chunk: Buffer): Buffer {
  if (chunk.byteLength * 2 > chunk.buffer.byteLength) return chunk;
  const own = Buffer.allocUnsafeSlow(chunk.byteLength);
  chunk.copy(own);
  return own;
}
