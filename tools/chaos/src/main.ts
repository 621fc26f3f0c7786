#!/usr/bin/env node
import { parseArgs } from "node:util";
import { DEFAULTS, formatReport, runChaos } from "./chaos.js";

/** `chaos [--orders N] [--seed S] [--clients C] [--faults F]`: one run, its report, exit 1 on a violation. */
async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (command !== "chaos") {
    process.stderr.write("usage: meshwork-chaos chaos [--orders N] [--seed S] [--clients C] [--faults F]\n");
    return 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      orders: { type: "string" },
      seed: { type: "string" },
      clients: { type: "string" },
      faults: { type: "string" },
    },
  });
  const num = (v: string | undefined, d: number, name: string) => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: "${v}" is not a whole number`);
    return n;
  };
  const orders = num(values.orders, DEFAULTS.orders, "orders");
  const report = await runChaos({
    ...DEFAULTS,
    seed: num(values.seed, Math.floor(Math.random() * 2 ** 31), "seed"),
    orders,
    clients: num(values.clients, DEFAULTS.clients, "clients"),
    // About one fault per 15 orders, at least the default handful.
    faults: num(values.faults, Math.max(DEFAULTS.faults, Math.floor(orders / 15)), "faults"),
    quiescenceMs: Math.max(DEFAULTS.quiescenceMs, orders * 50),
    say: (line) => process.stdout.write(`${line}\n`),
  });
  process.stdout.write(`${formatReport(report)}\n`);
  return report.violations.length === 0 && report.faults.every((f) => !f.error) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
