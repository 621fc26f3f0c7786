import { createRequire } from "node:module";

/**
 * The Node options the gateway is started with wherever it runs: the `meshwork.nodeOptions` of
 * its package.json, the one place they are set. The image puts them in front of the deployment's
 * own `NODE_OPTIONS` (see the Dockerfile's CMD), `meshctl up` does the same (in place of the
 * 4 MB semi-space it gives the services), and the bench starts its gateway fixture and the bare
 * proxy it is compared with with them.
 *
 * `--max-semi-space-size=16` (MB), V8's own size on 64-bit, written out so that no launcher's
 * default replaces it. A smaller young generation cuts the gateway's RSS but costs it far more
 * CPU: a call's objects live as long as the call (128 in flight in the bench), so with 4 MB a
 * scavenge comes before most calls end, promotes them, and the old generation fills with them.
 * Bench (issue 23, gateway and bare proxy alternated, 5 runs each, one round, load 4-11, proxy at
 * V8's default): semi-space 16 -> 4: gateway CPU per call 142 -> 225 µs (ratio 0.99 -> 1.37x),
 * req/s 0.91 -> 0.59x, p99 1.01 -> 2.04x (full GCs 0 -> 42-101 ms in the latency run), RSS 236
 * -> 141 MB (1.80 -> 1.17x). The proxy given the same flag (5 runs each of 16 / 8 / 4 MB,
 * alternated, load 8-28): gateway CPU per call 171 / 235 / 234 µs (1.18 / 1.22 / 1.33x the
 * proxy's), req/s 0.82 / 0.70 / 0.66x, p99 0.78 / 1.78 / 3.37x, RSS 174 / 159 / 139 MB (1.43 /
 * 1.46 / 1.33x). Options are read at start only: V8 sizes the young generation from the command
 * line or `NODE_OPTIONS` (`v8.setFlagsFromString` later changes nothing).
 */
export const GATEWAY_NODE_OPTIONS: string = readNodeOptions();

function readNodeOptions(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { meshwork?: { nodeOptions?: unknown } };
  const options = pkg.meshwork?.nodeOptions;
  return typeof options === "string" ? options : "";
}

/**
 * The semi-space size (MB) a process started with `nodeOptions` (NODE_OPTIONS) and `execArgv`
 * runs with: the last `--max-semi-space-size` of either, the command line after NODE_OPTIONS
 * (as Node applies them). Undefined: V8's default.
 */
export function semiSpaceMbOf(nodeOptions: string, execArgv: readonly string[]): number | undefined {
  const words = [...nodeOptions.split(/\s+/), ...execArgv].filter(Boolean);
  let mb: number | undefined;
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    const m = /^--max[-_]semi[-_]space[-_]size(?:=(.*))?$/.exec(word);
    if (!m) continue;
    const value = m[1] ?? words[i + 1];
    if (value !== undefined && /^\d+$/.test(value)) mb = Number(value);
  }
  return mb;
}
