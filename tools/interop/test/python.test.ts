import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTargets, type Targets } from "./targets.js";

// grpc/grpc's interop cases with Python grpcio (Debian's python3-grpcio; stubs generated at start
// by python3-grpc-tools) as the client: python/interop_client.py runs every case against one
// target and prints a JSON line per case. Debian's interpreter is used by default, since the first
// `python3` on the PATH may be another one without grpcio (MESHWORK_TEST_PYTHON overrides).

const PYTHON = process.env.MESHWORK_TEST_PYTHON ?? "/usr/bin/python3";
const script = fileURLToPath(new URL("../python/interop_client.py", import.meta.url));
const CASES = [
  "empty_unary",
  "large_unary",
  "client_compressed_unary",
  "server_compressed_unary",
  "client_streaming",
  "client_compressed_streaming",
  "server_streaming",
  "server_compressed_streaming",
  "ping_pong",
  "empty_stream",
  "custom_metadata",
  "status_code_and_message",
  "special_status_message",
  "unimplemented_method",
  "unimplemented_service",
  "cancel_after_begin",
  "cancel_after_first_response",
  "timeout_on_sleeping_server",
];

interface Outcome {
  case: string;
  ok: boolean;
  error?: string;
}

const children = new Set<ChildProcess>();

/** Runs the Python client against `address`; resolves with its outcome per case. */
function runPython(address: string): Promise<Map<string, Outcome>> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [script, address, ...CASES], {
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    children.add(child);
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on("data", (c: Buffer) => {
      err += c.toString();
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 90_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      children.delete(child);
      const outcomes = new Map<string, Outcome>();
      for (const line of out.split("\n").filter(Boolean)) {
        const o = JSON.parse(line) as Outcome;
        outcomes.set(o.case, o);
      }
      if (outcomes.size === 0)
        reject(new Error(`python client exited ${code} with no result: ${err.slice(-2000)}`));
      else resolve(outcomes);
    });
  });
}

let targets: Targets;
beforeAll(async () => {
  targets = await startTargets();
});
afterAll(async () => {
  for (const c of children) if (c.pid) process.kill(-c.pid, "SIGKILL");
  await targets?.stop();
});

describe.each(["direct", "gateway"] as const)("python grpcio, %s", (where) => {
  let outcomes: Map<string, Outcome>;
  beforeAll(async () => {
    outcomes = await runPython(targets[where]);
  }, 120_000);

  for (const name of CASES) {
    it(name, () => {
      expect(outcomes.get(name)).toEqual({ case: name, ok: true });
    });
  }
});
