import fc from "fast-check";

/** A request as a fuzz property sends it with `rawExchange`. */
export interface FuzzRequest {
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
  h2: boolean;
}

const CONTENT_TYPES = [
  "application/grpc",
  "application/grpc+proto",
  "application/grpc+json",
  "application/grpc-web",
  "application/grpc-web+proto",
  "application/grpc-web-text",
  "application/proto",
  "application/json",
  "application/connect+proto",
  "application/connect+json",
  "text/plain",
  "",
];

/** `grpc-timeout` values: well-formed, edge cases and noise. */
const timeoutArb = fc.oneof(
  fc.constantFrom("1S", "100m", "0n", "99999999H", "1", "S", "-1S", "1.5S", "123456789S", " 1S", "1s"),
  fc
    .tuple(fc.nat({ max: 999_999_999 }), fc.constantFrom("H", "M", "S", "m", "u", "n", "x"))
    .map(([n, u]) => `${n}${u}`),
  fc.string({ maxLength: 12 }),
);

/** A 5-byte-prefixed frame with any flags and a length that may lie about what follows. */
const frameArb = fc
  .tuple(
    fc.oneof(fc.constantFrom(0, 1, 2, 0x80), fc.nat({ max: 255 })),
    fc.uint8Array({ maxLength: 64 }),
    fc.oneof(fc.constant(undefined), fc.nat({ max: 0xffffffff })),
  )
  .map(([flags, data, lie]) => {
    const out = Buffer.alloc(5 + data.length);
    out[0] = flags;
    out.writeUInt32BE(lie ?? data.length, 1);
    out.set(data, 5);
    return new Uint8Array(out);
  });

const bodyArb = fc.oneof(
  fc.uint8Array({ maxLength: 200 }),
  frameArb,
  fc.array(frameArb, { minLength: 1, maxLength: 3 }).map((fs) => new Uint8Array(Buffer.concat(fs))),
  fc.string({ maxLength: 80 }).map((s) => new Uint8Array(Buffer.from(s))),
);

/** Header names a client may send and the parsers read, with odd values. */
const extraHeadersArb = fc.dictionary(
  fc.constantFrom(
    "grpc-encoding",
    "grpc-accept-encoding",
    "content-encoding",
    "connect-protocol-version",
    "connect-timeout-ms",
    "connect-content-encoding",
    "authorization",
    "x-request-id",
    "traceparent",
    "origin",
  ),
  fc.oneof(
    fc.constantFrom(
      "gzip",
      "br",
      "identity",
      "deflate",
      "snappy",
      "1",
      "Bearer x.y.z",
      "trailers",
      "-1",
      "9".repeat(30),
    ),
    fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
  ),
  { maxKeys: 4 },
);

/**
 * Requests shaped like RPCs, mostly wrong: a path among `paths` (or noise), any of the content
 * types the edge and the services sniff, a `grpc-timeout` from valid to nonsense, headers the
 * parsers read, and bodies from random bytes to frames whose length prefix lies.
 */
export function fuzzRequestArb(paths: readonly string[]): fc.Arbitrary<FuzzRequest> {
  return fc.record({
    path: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...paths) },
      { weight: 1, arbitrary: fc.stringMatching(/^\/[\x21-\x7e]{0,40}$/) },
    ),
    headers: fc
      .tuple(fc.constantFrom(...CONTENT_TYPES), fc.option(timeoutArb), extraHeadersArb)
      .map(([ct, timeout, extra]) => ({
        ...extra,
        ...(ct ? { "content-type": ct } : {}),
        ...(timeout !== null ? { "grpc-timeout": timeout } : {}),
      })),
    body: bodyArb,
    h2: fc.boolean(),
  });
}
