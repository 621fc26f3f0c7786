import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const meshctl = fileURLToPath(new URL("../dist/main.js", import.meta.url));

describe("meshctl's command line", () => {
  it("names an unknown option in one line and exits 2, with no stack trace", () => {
    const r = spawnSync(process.execPath, [meshctl, "up", "--home", "/tmp/x"], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("meshctl up: Unknown option '--home'");
    expect(r.stderr).toContain("meshctl help lists the options");
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack frames
    expect(r.stdout).toBe("");
  });

  it("names an option given without its value", () => {
    const r = spawnSync(process.execPath, [meshctl, "traces", "--limit"], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/meshctl traces: Option '--limit <value>' argument missing/);
  });

  it("refuses `meshctl up` under test with the default events namespace, naming EVENTS_NAMESPACE", () => {
    // Under vitest (VITEST=true, inherited): with EVENTS_NAMESPACE empty it would declare the
    // default namespace's streams on the shared NATS server. Refused before anything starts.
    const r = spawnSync(process.execPath, [meshctl, "up"], {
      encoding: "utf8",
      timeout: 30_000,
      env: { ...process.env, EVENTS_NAMESPACE: "", MESHWORK_HOME: "/nonexistent/meshctl-guard" },
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^meshctl up: EVENTS_NAMESPACE is empty under test \(VITEST=true\)/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stdout).toBe("");
  });
});
