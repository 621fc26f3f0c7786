import { killGroup, waitFor } from "@meshwork/testing";
import { describe, expect, it } from "vitest";
import { MESH_UP_LINE, startMeshProcess } from "./mesh-start.js";

/** A stand-in for `npm start`: says the mesh is up and stays. */
const upAndStay = {
  command: process.execPath,
  args: ["-e", `console.log(${JSON.stringify(MESH_UP_LINE)}); setInterval(() => {}, 1000);`],
  cwd: process.cwd(),
  env: process.env,
};

describe("startMeshProcess", () => {
  it("resolves once the mesh says it is up, with the CPU read then", async () => {
    const mesh = await startMeshProcess({ ...upAndStay, cpuSeconds: async () => 1.5 });
    try {
      expect(mesh.cpuS).toBe(1.5);
      expect(mesh.lines).toContain(MESH_UP_LINE);
    } finally {
      killGroup(mesh.npmPid);
    }
    expect(await mesh.exited).toBe("SIGKILL");
  });

  it("rejects, and stops the mesh, when its CPU cannot be read once it is up (it settled never before)", async () => {
    let pid: number | undefined;
    const started = startMeshProcess({
      ...upAndStay,
      cpuSeconds: async (p) => {
        pid = p;
        throw new Error("no /proc here");
      },
    });
    await expect(started).rejects.toThrow(
      /the mesh was up, but its CPU could not be read: Error: no \/proc here/,
    );
    expect(pid).toBeDefined();
    // Stopped, not left running: gone once reaped.
    await waitFor(() => {
      try {
        process.kill(pid as number, 0);
        return false;
      } catch {
        return true;
      }
    });
  });
});
