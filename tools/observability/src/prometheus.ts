import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ManagedProcess, startProcess, waitFor } from "@meshwork/testing";
import { stringify } from "yaml";
import { findBinary } from "./tools.js";

/** A scrape target: `host:port`, the path, and its `service` label. */
export interface ScrapeTarget {
  address: string;
  path: string;
  service: string;
}

/** A vector sample of an instant query. */
export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** A Prometheus server started for a test. */
export interface TestPrometheus {
  url: string;
  process: ManagedProcess;
  /** Runs an instant query; rejects on an error answer (a query Prometheus refuses). */
  query(expr: string): Promise<Sample[]>;
  /** `GET /api/v1/<path>` and its `data`. */
  api<T>(path: string): Promise<T>;
  /** Stops the server and removes its storage. */
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts Debian's `prometheus` binary on a free port with a temporary storage directory,
 * scraping `targets` and evaluating `ruleFiles` every `intervalS` seconds (a test's mesh lives
 * for seconds, not minutes). Undefined when the binary is not installed.
 */
export async function startPrometheus(options: {
  targets: ScrapeTarget[];
  ruleFiles: string[];
  intervalS?: number;
}): Promise<TestPrometheus | undefined> {
  const bin = findBinary("prometheus");
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), "mw-prometheus-"));
  const interval = `${options.intervalS ?? 1}s`;
  const byPath = new Map<string, ScrapeTarget[]>();
  for (const t of options.targets) byPath.set(t.path, [...(byPath.get(t.path) ?? []), t]);
  const config = {
    global: { scrape_interval: interval, evaluation_interval: interval, scrape_timeout: interval },
    rule_files: options.ruleFiles,
    scrape_configs: [...byPath].map(([path, targets]) => ({
      job_name: path === "/metrics" ? "meshwork-services" : "meshwork-gateway",
      metrics_path: path,
      static_configs: targets.map((t) => ({ targets: [t.address], labels: { service: t.service } })),
    })),
  };
  writeFileSync(join(dir, "prometheus.yml"), stringify(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = startProcess(bin, [
    `--config.file=${join(dir, "prometheus.yml")}`,
    `--storage.tsdb.path=${join(dir, "data")}`,
    `--web.listen-address=127.0.0.1:${port}`,
    "--log.level=warn",
  ]);
  const stop = async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) await proc.stop("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(async () => (await fetch(`${url}/-/ready`)).ok, { what: "prometheus to be ready" });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${proc.lines.join("\n")}`);
  }
  const api = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${url}/api/v1/${path}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== "success") throw new Error(`prometheus ${path}: ${body.error}`);
    return body.data;
  };
  return {
    url,
    process: proc,
    api,
    query: async (expr) =>
      (await api<{ resultType: string; result: Sample[] }>(`query?query=${encodeURIComponent(expr)}`)).result,
    stop,
  };
}
