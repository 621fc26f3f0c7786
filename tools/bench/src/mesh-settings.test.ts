import { describe, expect, it } from "vitest";
import { runSettingsOf } from "./mesh-settings.js";

const nul = (...parts: string[]) => `${parts.join("\0")}\0`;

describe("runSettingsOf", () => {
  it("takes the script, the Node flags before it and the pool settings of the environment", () => {
    const settings = runSettingsOf(
      nul(
        "/usr/bin/node",
        "--max-semi-space-size=4",
        "/repo/apps/users/dist/main.bundle.js",
        "--flag-of-the-script",
      ),
      nul("PATH=/usr/bin", "DB_POOL_MAX=2", "DB_POOL_IDLE_TIMEOUT_S=5", "DATABASE_URL=postgres://x=y@h/db"),
    );
    expect(settings).toEqual({
      script: "/repo/apps/users/dist/main.bundle.js",
      nodeArgs: ["--max-semi-space-size=4"],
      env: { DB_POOL_MAX: "2", DB_POOL_IDLE_TIMEOUT_S: "5" },
    });
  });

  it("leaves out a CPU profile's flags", () => {
    const settings = runSettingsOf(
      nul("node", "--enable-source-maps", "--cpu-prof", "--cpu-prof-dir=/tmp/p", "main.js"),
      "",
    );
    expect(settings).toEqual({ script: "main.js", nodeArgs: ["--enable-source-maps"], env: {} });
  });

  it("refuses a command line without a script", () => {
    expect(() => runSettingsOf(nul("node", "--max-semi-space-size=4"), "")).toThrow(/no script/);
  });
});
