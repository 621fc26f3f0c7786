import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/**
 * How many generated inputs a fuzz property runs: `defaultRuns` (small, so `npm test` stays fast),
 * or `FUZZ_RUNS` for a long run (`FUZZ_RUNS=100000 npm run fuzz`). `FUZZ_SEED` replays a run.
 */
export function fuzzRuns(defaultRuns: number): number {
  const n = Number(process.env.FUZZ_RUNS);
  return Number.isInteger(n) && n > 0 ? n : defaultRuns;
}

/** A committed corpus entry's bytes: `{ "$bytes": "<base64>" }` in the JSON file. */
interface BytesJson {
  $bytes: string;
}

function revive(_key: string, value: unknown): unknown {
  if (value && typeof value === "object" && typeof (value as BytesJson).$bytes === "string") {
    return new Uint8Array(Buffer.from((value as BytesJson).$bytes, "base64"));
  }
  return value;
}

/**
 * The committed corpus of one fuzz target: a JSON array of inputs (seeds and every counterexample
 * found so far; bytes written as `{ "$bytes": "<base64>" }`), run first on every run as regression
 * cases. A counterexample fast-check prints is added to the file once the code is fixed.
 */
export function loadCorpus<T>(file: URL): T[] {
  const path = fileURLToPath(file);
  if (!existsSync(path)) throw new Error(`fuzz corpus ${path} is missing`);
  return JSON.parse(readFileSync(path, "utf8"), revive) as T[];
}

/**
 * The seed CI's runs use when `FUZZ_SEED` is not set: CI replays the same generated inputs every
 * time (a run that fails must fail again), while a developer's `npm test` explores new ones.
 */
export const CI_FUZZ_SEED = 20261206;

/**
 * fast-check parameters for a fuzz property: the run count from {@link fuzzRuns}, `FUZZ_SEED`
 * when set (else {@link CI_FUZZ_SEED} under `CI`, else a random seed), and the corpus as the
 * examples run before the generated inputs.
 */
export function fuzzParameters<T>(corpus: readonly T[], defaultRuns: number) {
  const seed = Number(process.env.FUZZ_SEED || (process.env.CI ? CI_FUZZ_SEED : Number.NaN));
  return {
    numRuns: fuzzRuns(defaultRuns),
    examples: corpus.map((c) => [c] as [T]),
    ...(Number.isInteger(seed) ? { seed } : {}),
  };
}
