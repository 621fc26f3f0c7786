import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import { forkBenchChild } from "./events-fork.js";

const dir = mkdtempSync(join(tmpdir(), "bench-fork-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A child script of `body` (plain JavaScript: the children are built files). */
function script(name: string, body: string): URL {
  const file = join(dir, `${name}.mjs`);
  writeFileSync(file, body);
  return pathToFileURL(file);
}

/** The pids of this process's children running a script of `dir` (from /proc: Linux). */
function scriptChildren(): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === process.pid && readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(dir)) {
        pids.push(Number(entry));
      }
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

describe("forkBenchChild", () => {
  it("kills a child that never says it is ready (one stuck connecting would outlive the bench)", async () => {
    // Like a child stuck in connectNats (which waits for its first connection for ever): alive,
    // and deaf to the parent's going away (its disconnect handler is not installed yet).
    const stuck = script("stuck", "setInterval(() => {}, 1000);");
    try {
      await expect(forkBenchChild(stuck, {}, () => {}, { readyTimeoutMs: 500 })).rejects.toThrow(
        /stuck\.mjs was not ready in 0\.5s/,
      );
      await waitFor(() => scriptChildren().length === 0, {
        timeoutMs: 10_000,
        what: "the child that was not ready to be gone",
      });
    } finally {
      for (const pid of scriptChildren()) process.kill(pid, "SIGKILL");
    }
  });

  it("rejects a command to a child that has exited, instead of an unhandled 'error' event", async () => {
    const quits = script("quits", `process.send({ kind: "ready" }, () => process.exit(0));`);
    const child = await forkBenchChild<{ kind: string }, { kind: string }>(quits, {});
    await expect(child.exited).rejects.toThrow(/quits\.mjs exited \(code 0\)/);
    await expect(child.ask({ kind: "start" }, "started")).rejects.toThrow(
      /quits\.mjs exited|channel closed/i,
    );
  });
});
