import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { consoleAssetsDir } from "./console.js";

// What `npm start` runs: meshctl's bundle, which holds the console's code (see consoleAssetsDir).
const bundle = fileURLToPath(new URL("../dist/main.bundle.js", import.meta.url));

describe("the console inside meshctl's bundle", () => {
  const cleanups: Array<() => void> = [];
  afterEach(() => {
    for (const c of cleanups.splice(0)) c();
  });

  it("is bundled, not loaded from node_modules beside the bundle", () => {
    // An external `@meshwork/console` loaded the console's modules and second copies of the libs
    // (discovery, events, tracestore, contracts, telemetry) from node_modules: ~1 s of CPU.
    expect(readFileSync(bundle, "utf8")).not.toMatch(/from\s*"@meshwork\/console"/);
  });

  it("serves its front end from the console package's dist, found from meshctl's bundle", async () => {
    const home = mkdtempSync(join(tmpdir(), "meshctl-console-"));
    const child = spawn(
      process.execPath,
      [bundle, "console", "--listen", "127.0.0.1:0", "--gateway", "http://127.0.0.1:9"],
      { env: { ...process.env, MESHWORK_HOME: home }, stdio: ["ignore", "pipe", "pipe"] },
    );
    cleanups.push(() => {
      child.kill("SIGKILL");
      rmSync(home, { recursive: true, force: true });
    });
    const url = await new Promise<string>((resolve, reject) => {
      const lines: string[] = [];
      child.once("exit", (code) => reject(new Error(`meshctl console exited ${code}: ${lines.join("\n")}`)));
      createInterface({ input: child.stderr }).on("line", (l) => lines.push(l));
      createInterface({ input: child.stdout }).on("line", (l) => {
        lines.push(l);
        const m = /^console: (http:\/\/\S+)/.exec(l);
        if (m?.[1]) resolve(m[1]);
      });
    });
    const page = await fetch(url);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toBe(readFileSync(join(consoleAssetsDir(), "ui", "index.html"), "utf8"));
  }, 60_000);

  it("finds the package's dist: the front end and the API comments the console's build wrote", () => {
    const dir = consoleAssetsDir();
    expect(readFileSync(join(dir, "ui", "index.html"), "utf8")).toMatch(/<html/i);
    expect(
      Object.keys(JSON.parse(readFileSync(join(dir, "api-comments.json"), "utf8"))).length,
    ).toBeGreaterThan(0);
  });
});
