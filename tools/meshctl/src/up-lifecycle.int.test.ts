import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { freePort, type ManagedProcess, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import type { ServiceManifest } from "./services.js";
import type { UpOptions } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/**
 * A stand-in process `up` supervises (kind `legacy`: ready when `GET /healthz` answers), logging
 * like pino with numeric levels and honouring LOG_LEVEL as the mesh's processes do:
 * FAKE_MODE=crash exits 3 at once; serve listens on PORT, logs `listening` (info), an info and a
 * warn line, and exits 4 after FAKE_EXIT_AFTER_MS if set; mute serves but never says where.
 * `/healthz` answers 503 until FAKE_READY_AFTER_MS after listening (when set). Started as a
 * gateway (`up` gives it ADMIN_PORT), it names itself its admin listener and `/ready` answers 200.
 */
const FAKE = `
import { createServer } from "node:http";
const ranks = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };
const min = ranks[process.env.LOG_LEVEL ?? "info"];
const log = (level, fields, msg) => {
  if (level >= min) console.log(JSON.stringify({ level, time: Date.now(), service: "fake", ...fields, msg }));
};
if (process.env.ADMIN_PORT !== undefined)
  log(30, { jwks: process.env.JWKS_URL, legacy: process.env.STRANGLER_LEGACY_URL }, "fake-gateway-env");
if (process.env.FAKE_MODE === "crash") {
  console.error("fake: cannot start (on purpose)");
  process.exit(3);
}
const gateway = process.env.ADMIN_PORT !== undefined;
let readyAt = Infinity;
let probes = 0;
const server = createServer((req, res) => {
  if (gateway && req.url === "/ready") return res.writeHead(200).end();
  // A service's health check as meshctl asks it (Connect, binary): NOT_SERVING (2), then SERVING (1).
  if (req.url === "/grpc.health.v1.Health/Check") {
    probes++;
    req.resume();
    return res.writeHead(200, { "content-type": "application/proto" }).end(Buffer.from([8, Date.now() >= readyAt ? 1 : 2]));
  }
  if (req.url === "/healthz") return res.writeHead(Date.now() >= readyAt ? 200 : 503).end();
  res.writeHead(404).end();
});
const host = process.env.HOST ?? "127.0.0.1";
server.listen(Number(process.env.PORT ?? 0), host, () => {
  if (process.env.FAKE_MODE === "mute") return;
  readyAt = gateway ? 0 : Date.now() + Number(process.env.FAKE_READY_AFTER_MS ?? 0);
  // As the runtime does: says when it turns SERVING (here with the health checks it answered before).
  if (readyAt > Date.now()) setTimeout(() => log(30, { status: "SERVING", probes }, "health changed"), readyAt - Date.now());
  const port = server.address().port;
  log(30, { host, port, ...(gateway ? { adminUrl: "http://" + host + ":" + port } : {}) }, "listening");
  log(30, {}, "fake-info-line");
  log(40, {}, "fake-warn-line");
  const after = Number(process.env.FAKE_EXIT_AFTER_MS ?? 0);
  if (after > 0) setTimeout(() => process.exit(4), after);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
// Orphaned (its up killed by a failing test): gone too, rather than left serving.
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) process.exit(0); }, 500).unref();
`;

/** Runs `up` (the built one) in its own process over the given stand-ins, as `meshctl up` would. */
const DRIVER = `
import { up } from ${JSON.stringify(pathToFileURL(join(root, "tools/meshctl/dist/up.js")).href)};
const options = JSON.parse(process.argv[2]);
process.exitCode = await up({ ...options, out: process.stdout });
`;

describe("meshctl up, when its processes do not come up or stay up", () => {
  const dir = mkdtempSync(join(tmpdir(), "mw-up-life-"));
  writeFileSync(join(dir, "fake.mjs"), FAKE);
  writeFileSync(join(dir, "driver.mjs"), DRIVER);
  // A stand-in that listens but never says so (its address stays unknown to up).
  writeFileSync(join(dir, "fake-mute.mjs"), `process.env.FAKE_MODE = "mute";\n${FAKE}`);
  const procs: ManagedProcess[] = [];
  afterAll(async () => {
    for (const p of procs) {
      if (p.child.exitCode !== null) continue;
      p.child.kill("SIGINT"); // up stops its processes; SIGKILL after a bound
      const killer = setTimeout(() => p.child.kill("SIGKILL"), 20_000);
      await p.exited;
      clearTimeout(killer);
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const fake = (name: string, kind: ServiceManifest["kind"] = "legacy"): ServiceManifest => ({
    name,
    port: 0,
    dir,
    main: "fake.mjs",
    database: false,
    kind,
  });
  const start = (
    names: Array<string | ServiceManifest>,
    env: Record<string, string>,
    options: Partial<Omit<UpOptions, "out" | "services">> = {},
  ) => {
    const home = join(dir, uniqueName("home"));
    const spec: Omit<UpOptions, "out"> = {
      root: dir,
      services: names.map((n) => (typeof n === "string" ? fake(n) : n)),
      home,
      autoPorts: true,
      databaseUrl: undefined,
      dbPrefix: "unused",
      natsUrl: process.env.NATS_URL ?? "nats://127.0.0.1:4222",
      registryBucket: uniqueName("unused"),
      logLevel: "info",
      otlp: "off",
      console: "off",
      restartPolicy: { initialDelayMs: 20, maxDelayMs: 50, maxCrashes: 3, windowMs: 60_000 },
      ...options,
    };
    const proc = startProcess(process.execPath, [join(dir, "driver.mjs"), JSON.stringify(spec)], {
      cwd: dir,
      env,
    });
    procs.push(proc);
    return proc;
  };
  /** The process's exit, or a failure with what it printed when it does not end in time. */
  const exitOf = async (proc: ManagedProcess, timeoutMs = 60_000) => {
    const code = await Promise.race([
      proc.exited,
      new Promise<"still running">((r) => setTimeout(() => r("still running"), timeoutMs).unref()),
    ]);
    if (code === "still running") {
      throw new Error(`up did not exit within ${timeoutMs} ms; it said:\n${proc.lines.join("\n")}`);
    }
    return code;
  };

  it("exits 1 and says so when every process crashes until it is left down (it does not sit waiting)", async () => {
    const proc = start(["alpha", "beta"], { FAKE_MODE: "crash" });
    expect(await exitOf(proc)).toBe(1);
    const out = proc.lines.join("\n");
    expect(out).toMatch(/alpha exited with 3: 3 crashes within 60 s; left down/);
    expect(out).toMatch(/beta exited with 3: 3 crashes within 60 s; left down/);
    expect(out).toMatch(/failed: every process exited and was left down after 3 crashes/);
    expect(out).not.toContain("the mesh is up");
  }, 90_000);

  it("exits 1 once the last running process has crashed in a loop after the mesh was up", async () => {
    const proc = start(["gamma"], { FAKE_MODE: "serve", FAKE_EXIT_AFTER_MS: "300" });
    await proc
      .waitForLine((l) => l.includes("the mesh is up"), 60_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
      });
    expect(await exitOf(proc)).toBe(1);
    expect(proc.lines.join("\n")).toMatch(
      /every process has exited and was left down after crashing in a loop: stopping \(exit 1\)/,
    );
  }, 90_000);

  it("says which processes it still waits for and why, and a Ctrl-C while waiting ends it", async () => {
    const proc = start(["delta"], { FAKE_MODE: "mute" }, { progressEveryMs: 500 });
    await proc
      .waitForLine(
        (l) => /still waiting after \d+ s for: delta \(no "listening" line from it yet\)/.test(l),
        30_000,
      )
      .catch((err: Error) => {
        throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
      });
    proc.child.kill("SIGINT");
    expect(await exitOf(proc, 30_000)).toBe(0);
    expect(proc.lines.join("\n")).toContain("SIGINT: stopping");
  }, 90_000);

  it("shows the level asked for (--log-level warn) and still learns each address from the info-level listening line", async () => {
    const proc = start(["epsilon"], { FAKE_MODE: "serve" }, { logLevel: "warn" });
    try {
      const row = await proc
        .waitForLine((l) => /^epsilon\s+127\.0\.0\.1:\d+\s+SERVING/.test(l), 60_000)
        .catch((err: Error) => {
          throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
        });
      const port = row.split(/\s+/)[1]?.split(":")[1];
      await waitFor(() => proc.lines.some((l) => l.includes("fake-warn-line")), { timeoutMs: 10_000 });
      expect(proc.lines.some((l) => l.includes("fake-info-line"))).toBe(false);
      expect(proc.lines.some((l) => l.includes('"msg":"listening"'))).toBe(false);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      proc.child.kill("SIGINT");
      expect(await exitOf(proc, 30_000)).toBe(0);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 90_000);

  it("sees a process ready as soon as it says it listens, not at its next health poll", async () => {
    // One poll in ten minutes: only the "listening" line can bring the mesh up within the test.
    const proc = start(["zeta", "theta"], { FAKE_MODE: "serve" }, { pollEveryMs: 600_000 });
    try {
      await proc
        .waitForLine((l) => l.includes("the mesh is up"), 60_000)
        .catch((err: Error) => {
          throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
        });
      proc.child.kill("SIGINT");
      expect(await exitOf(proc, 30_000)).toBe(0);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 90_000);

  it("starts the gateway once the monolith listens, before it is SERVING", async () => {
    const readyAfterMs = 8_000;
    const proc = start([fake("iota"), fake("edge", "gateway")], {
      FAKE_MODE: "serve",
      FAKE_READY_AFTER_MS: String(readyAfterMs),
    });
    try {
      await proc
        .waitForLine((l) => l.includes("the mesh is up"), 60_000)
        .catch((err: Error) => {
          throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
        });
      const listenedAt = (name: string) => {
        const line = proc.lines.find((l) => l.startsWith(`${name} `) && l.includes('"msg":"listening"'));
        return (JSON.parse(line?.slice(line.indexOf("{")) ?? "{}") as { time?: number }).time ?? Number.NaN;
      };
      // Before, the gateway was started once the monolith answered /healthz: at least
      // readyAfterMs after it listened.
      expect(listenedAt("edge") - listenedAt("iota")).toBeLessThan(readyAfterMs);
      expect(proc.lines.some((l) => /^iota\s+127\.0\.0\.1:\d+\s+SERVING/.test(l))).toBe(true);
      expect(proc.lines.some((l) => /^edge\s+127\.0\.0\.1:\d+\s+LIVE/.test(l))).toBe(true);
      proc.child.kill("SIGINT");
      expect(await exitOf(proc, 30_000)).toBe(0);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 90_000);

  it("asks a starting service for its health when it says it listens and when it says its health changed, not every poll", async () => {
    // Polled every 50 ms, the stand-in service answers NOT_SERVING for 1.5 s and then says it is
    // SERVING: main's up asked it ~30 times before; now once when it listens (and at most once
    // more when a poll falls between), then at its hint.
    const proc = start(
      [fake("kappa", "service")],
      { FAKE_MODE: "serve", FAKE_READY_AFTER_MS: "1500" },
      {
        pollEveryMs: 50,
      },
    );
    try {
      const line = await proc
        .waitForLine((l) => l.includes('"msg":"health changed"'), 60_000)
        .catch((err: Error) => {
          throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
        });
      await proc.waitForLine((l) => l.includes("the mesh is up"), 30_000);
      const { probes } = JSON.parse(line.slice(line.indexOf("{"))) as { probes: number };
      expect(probes).toBeGreaterThanOrEqual(1);
      expect(probes).toBeLessThanOrEqual(3);
      expect(proc.lines.some((l) => /^kappa\s+127\.0\.0\.1:\d+\s+SERVING/.test(l))).toBe(true);
      proc.child.kill("SIGINT");
      expect(await exitOf(proc, 30_000)).toBe(0);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 90_000);

  it.each([
    ["the default host", undefined],
    ["the HOST they inherit", "127.0.0.2"],
  ])(
    "with fixed ports starts the gateway with the services, at the addresses users and the monolith will listen on (%s)",
    async (_, host) => {
      const [usersPort, legacyPort, gatewayPort, adminPort] = [
        await freePort(),
        await freePort(),
        await freePort(),
        await freePort(),
      ];
      // users never says where it listens: before, the gateway waited for that and never started.
      const proc = start(
        [
          { ...fake("users", "service"), main: "fake-mute.mjs", port: usersPort },
          { ...fake("mono"), port: legacyPort },
          { ...fake("edge", "gateway"), port: gatewayPort, adminPort },
        ],
        { FAKE_MODE: "serve", ...(host ? { HOST: host } : {}) },
        { autoPorts: false },
      );
      try {
        const line = await proc
          .waitForLine((l) => l.includes('"msg":"fake-gateway-env"'), 60_000)
          .catch((err: Error) => {
            throw new Error(`${err.message}; up said:\n${proc.lines.join("\n")}`);
          });
        const env = JSON.parse(line.slice(line.indexOf("{"))) as { jwks?: string; legacy?: string };
        expect(env.jwks).toBe(`http://${host ?? "127.0.0.1"}:${usersPort}/.well-known/jwks.json`);
        expect(env.legacy).toBe(`http://${host ?? "127.0.0.1"}:${legacyPort}`);
        proc.child.kill("SIGINT");
        expect(await exitOf(proc, 30_000)).toBe(0);
      } finally {
        if (proc.child.exitCode === null) await proc.stop("SIGKILL");
      }
    },
    90_000,
  );
});
