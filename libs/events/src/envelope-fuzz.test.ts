import { createRegistry } from "@bufbuild/protobuf";
import { meshworkFiles } from "@meshwork/contracts";
import { fuzzParameters, loadCorpus } from "@meshwork/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { decodeEvent, UndecodableEventError } from "./envelope.js";

// Issue 26.3: the event envelope decoder under any ce-type and payload. A consumer dead-letters
// an UndecodableEventError at once; any other error would leave the message unsettled and
// redelivered forever, so that is the property. Corpus: fuzz-corpus/envelope.json.

const registry = createRegistry(...meshworkFiles);
const eventTypes = meshworkFiles.flatMap((f) => f.messages.map((m) => m.typeName));

interface Input {
  type: string;
  data: Uint8Array;
}

describe("decodeEvent", () => {
  it("decodes, or throws UndecodableEventError naming the problem; never anything else", () => {
    const inputArb = fc.record({
      type: fc.oneof(fc.constantFrom(...eventTypes), fc.string({ maxLength: 40 })),
      data: fc.oneof(
        fc.uint8Array({ maxLength: 120 }),
        // Well-formed tags with random values: deeper into the decoder than pure noise.
        fc
          .array(
            fc.tuple(
              fc.integer({ min: 1, max: 20 }),
              fc.constantFrom(0, 1, 2, 5),
              fc.uint8Array({ maxLength: 12 }),
            ),
            { maxLength: 6 },
          )
          .map((fields) => {
            const out: number[] = [];
            for (const [no, wire, bytes] of fields) {
              out.push((no << 3) | wire);
              if (wire === 2) out.push(bytes.length);
              out.push(...bytes);
            }
            return new Uint8Array(out);
          }),
      ),
    });
    fc.assert(
      fc.property(inputArb, ({ type, data }: Input) => {
        try {
          decodeEvent(registry, type, data);
        } catch (err) {
          expect(err).toBeInstanceOf(UndecodableEventError);
          expect((err as Error).message.length).toBeGreaterThan(0);
        }
      }),
      fuzzParameters(loadCorpus<Input>(new URL("../fuzz-corpus/envelope.json", import.meta.url)), 3_000),
    );
  });
});
