import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { waitFor } from "./wait.js";

const config = fileURLToPath(new URL("./fixtures/orphans/vitest.config.ts", import.meta.url));
const vitest = fileURLToPath(new URL("../../../node_modules/vitest/vitest.mjs", import.meta.url));

/** Alive: it exists and is not a zombie waiting for a parent to reap it. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("processes started by a failing test", () => {
  const dir = mkdtempSync(join(tmpdir(), "mw-orphans-"));
  const leftovers: number[] = [];
  afterAll(() => {
    for (const pid of leftovers) if (alive(pid)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it.each([
    ["the test fails (its worker exits)", "fail"],
    ["the vitest worker is SIGKILLed", "sigkill"],
  ])("are gone when %s: the child and what it started", async (_, mode) => {
    const pidsFile = join(dir, `${mode}.pids`);
    const run = spawnSync(process.execPath, [vitest, "run", "--config", config], {
      env: { ...process.env, ORPHANS_PIDS_FILE: pidsFile, ORPHANS_MODE: mode, CI: "" },
      encoding: "utf8",
      timeout: 120_000,
    });
    expect(run.status, `${run.stdout}\n${run.stderr}`).toBe(1);
    const pids = readFileSync(pidsFile, "utf8").trim().split(" ").map(Number);
    leftovers.push(...pids);
    expect(pids).toHaveLength(2);
    await waitFor(() => pids.every((pid) => !alive(pid)), {
      what: `processes ${pids.join(", ")} gone`,
      timeoutMs: 10_000,
    });
  });
});
