import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { readCpuTicks, waitForQuiet } from "./servers.js";

describe("waitForQuiet", () => {
  it("waits out a busy process and passes an idle one", async () => {
    const busy = spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
    const idle = spawn(process.execPath, ["-e", "setInterval(() => {}, 60_000)"], { stdio: "ignore" });
    try {
      const pid = busy.pid as number;
      const before = (await readCpuTicks(pid)) ?? 0;
      expect(await waitForQuiet([pid, idle.pid as number], 1_000)).toBe(false);
      expect(((await readCpuTicks(pid)) ?? 0) - before).toBeGreaterThan(10);
      busy.kill("SIGKILL");
      expect(await waitForQuiet([idle.pid as number], 10_000)).toBe(true);
      expect(await readCpuTicks(2 ** 22 + 12345)).toBeUndefined();
    } finally {
      busy.kill("SIGKILL");
      idle.kill("SIGKILL");
    }
  });
});
