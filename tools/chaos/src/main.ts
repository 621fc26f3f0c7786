#!/usr/bin/env node
import { loadavg } from "node:os";
import { parseArgs } from "node:util";
import { DEFAULTS, formatReport, runChaos } from "./chaos.js";
import { cleanups } from "./infra.js";
import { formatSoak, runSoak } from "./soak.js";

const say = (line: string) => process.stdout.write(`${line}\n`);

/** `soak [--minutes M] [--rate R] [--warmup-minutes W]`: exit 0 when the verdict passes. */
async function soak(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { minutes: { type: "string" }, rate: { type: "string" }, "warmup-minutes": { type: "string" } },
  });
  const minutes = Number(values.minutes ?? "30");
  if (!(minutes > 0)) throw new Error(`--minutes: "${values.minutes}" is not a positive number`);
  const rate = values.rate === undefined ? undefined : Number(values.rate);
  if (rate !== undefined && !(rate > 0)) throw new Error(`--rate: "${values.rate}" is not a positive number`);
  const warmup = values["warmup-minutes"];
  const warmupS = warmup === undefined ? undefined : Number(warmup) * 60;
  if (warmupS !== undefined && !(warmupS >= 0 && warmupS < minutes * 60))
    throw new Error(`--warmup-minutes: "${warmup}" is not a number from 0 to under --minutes`);
  const report = await runSoak({
    minutes,
    ...(rate ? { rate } : {}),
    ...(warmupS !== undefined ? { warmupS } : {}),
    probeSeconds: 10,
    say,
  });
  say(formatSoak(report, loadavg()));
  return report.verdict.pass ? 0 : 1;
}

/**
 * `chaos [--orders N] [--seed S] [--clients C] [--faults F] [--postgres-share P] [--watchdog-s W]`:
 * one run, its report, exit 1 on a violation or when no order is acknowledged for W seconds.
 */
async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === "soak") return soak(rest);
  if (command !== "chaos") {
    process.stderr.write(
      "usage: meshwork-chaos chaos [--orders N] [--seed S] [--clients C] [--faults F] [--postgres-share P] [--watchdog-s W] | soak [--minutes M] [--rate R] [--warmup-minutes W]\n",
    );
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      orders: { type: "string" },
      seed: { type: "string" },
      clients: { type: "string" },
      faults: { type: "string" },
      "postgres-share": { type: "string" },
      "watchdog-s": { type: "string" },
      "token-ttl-s": { type: "string" },
    },
  });
  const num = (v: string | undefined, d: number, name: string) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: "${v}" is not a whole number`);
    return n;
  };
  const orders = num(values.orders, DEFAULTS.orders, "orders");
  const share = values["postgres-share"] === undefined ? undefined : Number(values["postgres-share"]);
  if (share !== undefined && !(share >= 0 && share <= 1))
    throw new Error(`--postgres-share: "${values["postgres-share"]}" is not a number from 0 to 1`);
  const watchdogS = num(values["watchdog-s"], DEFAULTS.watchdogMs / 1000, "watchdog-s");
  if (watchdogS === 0) throw new Error('--watchdog-s: "0" is not a positive number of seconds');
  const report = await runChaos({
    ...DEFAULTS,
    seed: num(values.seed, Math.floor(Math.random() * 2 ** 31), "seed"),
    orders,
    clients: num(values.clients, DEFAULTS.clients, "clients"),
    // About one fault per 15 orders, at least the default handful.
    faults: num(values.faults, Math.max(DEFAULTS.faults, Math.floor(orders / 15)), "faults"),
    quiescenceMs: Math.max(DEFAULTS.quiescenceMs, orders * 50),
    watchdogMs: watchdogS * 1000,
    ...(values["token-ttl-s"] !== undefined
      ? { tokenTtlS: num(values["token-ttl-s"], 0, "token-ttl-s") }
      : {}),
    ...(share !== undefined ? { postgresShare: share } : {}),
    say,
  });
  process.stdout.write(`${formatReport(report)}\n`);
  return report.violations.length === 0 && report.faults.every((f) => !f.error) ? 0 : 1;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`${signal}: stopping every process this run started\n`);
    void Promise.allSettled([...cleanups].map((c) => c())).then(() => process.exit(130));
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
