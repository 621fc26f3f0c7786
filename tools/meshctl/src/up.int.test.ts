import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { isLivePostgres, readPostmasterPid, startLocalPostgres } from "@meshwork/local-postgres";
import { adminUrl, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import postgres from "postgres";
import { afterAll, describe, expect, it } from "vitest";
import { dropMeshDatabases, removeMeshStreams } from "../test/mesh-cleanup.js";
import { checkHealth } from "./health.js";
import { registryBucketFor } from "./registry.js";
import type { SupervisionReport } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/**
 * A throw-away MESHWORK_HOME the embedded Postgres server can use: when the tests run as root the
 * server runs as the OS user postgres, which must be able to enter the directory (mkdtemp makes
 * it 0700).
 */
function tempHome(): string {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  chmodSync(home, 0o755);
  return home;
}

/** Whether something accepts connections on 127.0.0.1:`port`. */
async function portOpen(port: number): Promise<boolean> {
  const net = await import("node:net");
  return new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

describe("npm start", () => {
  const home = tempHome();
  const namespace = `${uniqueName("t")}.`;
  afterAll(async () => {
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("starts the mesh on an embedded Postgres server (a database and role per service), prints the table once every service is SERVING, and stops it all cleanly on Ctrl-C", async () => {
    // Its own process group, so SIGINT reaches npm, meshctl and the services, as Ctrl-C does.
    const proc = startProcess("npm", ["start", "--", "--ports", "auto"], {
      cwd: root,
      detached: true,
      // No build: turbo built everything this test runs before it (meshctl's test depends on every
      // app's build), and a cache-hit build rewrites every dist/ file in place while other
      // packages' tests start processes from them (CI: the gateway suite's inventory failed to
      // import a half-written libs/runtime/dist file).
      env: {
        MESHWORK_HOME: home,
        DATABASE_URL: "",
        CI: "true",
        EVENTS_NAMESPACE: namespace,
        MESHWORK_START_BUILD: "never",
      },
    });
    try {
      // Each service on its own database and login role of the one embedded server.
      const row = await proc.waitForLine(
        (l) =>
          /^users\s+127\.0\.0\.1:\d+\s+SERVING\s+postgres meshwork_users \(role meshwork_users\)$/.test(l),
        // Build, an embedded server and eight processes: CI (load ~50) timed out at 240 s.
        360_000,
      );
      const address = row.split(/\s+/)[1];
      expect(proc.lines.some((l) => /^SERVICE\s+ADDRESS\s+HEALTH\s+DATABASE$/.test(l))).toBe(true);
      const notifRow = proc.lines.find((l) =>
        /^notifications\s+127\.0\.0\.1:\d+\s+SERVING\s+postgres meshwork_notifications \(role meshwork_notifications\)$/.test(
          l,
        ),
      );
      expect(notifRow).toBeDefined();
      for (const name of ["inventory", "payments", "orders"]) {
        expect(proc.lines).toContainEqual(
          expect.stringMatching(
            new RegExp(
              `^${name}\\s+127\\.0\\.0\\.1:\\d+\\s+SERVING\\s+postgres meshwork_${name} \\(role meshwork_${name}\\)$`,
            ),
          ),
        );
      }
      const pgRow = proc.lines.find((l) => /^postgres\s+127\.0\.0\.1:\d+\s+UP\s+embedded \(pid \d+/.test(l));
      expect(pgRow).toContain(`data ${join(home, "postgres")}`);
      const pgPort = Number(pgRow?.split(/\s+/)[1]?.split(":")[1]);
      const pgPid = readPostmasterPid(join(home, "postgres"))?.pid as number;
      expect(isLivePostgres(pgPid)).toBe(true);
      // It runs with the laptop-sized settings (no I/O workers, small shared buffers).
      const superuser = JSON.parse(readFileSync(`${join(home, "postgres")}.json`, "utf8")) as {
        superuser: string;
        password: string;
      };
      const su = postgres({
        host: "127.0.0.1",
        port: pgPort,
        user: superuser.superuser,
        password: superuser.password,
        database: "postgres",
        max: 1,
        onnotice: () => {},
      });
      try {
        const [io] = await su`show io_method`;
        const [buffers] = await su`show shared_buffers`;
        expect([io?.io_method, buffers?.shared_buffers]).toEqual(["sync", "32MB"]);
      } finally {
        await su.end();
      }
      expect(proc.lines).toContainEqual(expect.stringMatching(/^nats\s+127\.0\.0\.1:4222\s+UP\s+external/));
      const gatewayRow = proc.lines.find((l) =>
        /^gateway\s+127\.0\.0\.1:\d+\s+LIVE\s+admin 127\.0\.0\.1:\d+/.test(l),
      );
      expect(gatewayRow).toBeDefined();
      const gateway = `http://${gatewayRow?.split(/\s+/)[1]}`;
      // The legacy monolith runs too, on its own database, and the REST API starts on it.
      expect(proc.lines).toContainEqual(
        expect.stringMatching(
          /^legacy\s+127\.0\.0\.1:\d+\s+SERVING\s+postgres meshwork_legacy \(role meshwork_legacy\)$/,
        ),
      );
      const legacyCatalogue = await fetch(`${gateway}/api/products`);
      expect(legacyCatalogue.headers.get("x-meshwork-side")).toBe("legacy");
      expect(((await legacyCatalogue.json()) as { products: unknown[] }).products).toHaveLength(6);

      const users = createClient(
        UserService,
        createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "2" }),
      );
      const { user } = await users.registerUser({
        email: "npm-start@example.com",
        password: "started-by-npm",
        displayName: "Npm",
      });
      expect(user?.email).toBe("npm-start@example.com");
      // Service logs stream through, prefixed with the service name.
      await proc.waitForLine((l) => /^users\s+\| /.test(l) && l.includes("RegisterUser"));
      // Through the gateway: Login is public; GetUser needs the token Login gave.
      const edge = createClient(UserService, createGrpcTransport({ baseUrl: gateway }));
      await expect(edge.getUser({ id: user?.id ?? "" })).rejects.toMatchObject({
        code: Code.Unauthenticated,
      });
      const { accessToken } = await edge.login({
        email: "npm-start@example.com",
        password: "started-by-npm",
      });
      // The event reached the notifications service through NATS. Asked of notifications' own
      // port, ListNotifications wants the caller the gateway asserts: there is none.
      const direct = createClient(
        NotificationService,
        createConnectTransport({ baseUrl: `http://${notifRow?.split(/\s+/)[1]}`, httpVersion: "2" }),
      );
      await expect(direct.listNotifications({ userId: user?.id ?? "" })).rejects.toMatchObject({
        code: Code.Unauthenticated,
      });
      const notifications = createClient(NotificationService, createGrpcTransport({ baseUrl: gateway }));
      const bearer = { headers: { authorization: `Bearer ${accessToken}` } };
      await waitFor(
        async () =>
          (await notifications.listNotifications({ userId: user?.id ?? "" }, bearer)).notifications.length ===
          1,
      );
      const me = await edge.getUser(
        { id: user?.id ?? "" },
        { headers: { authorization: `Bearer ${accessToken}` } },
      );
      expect(me.user?.email).toBe("npm-start@example.com");
      // curl with JSON over HTTP/1.1, the same token.
      const res = await fetch(`${gateway}/meshwork.notifications.v1.NotificationService/ListNotifications`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${accessToken}` },
        body: JSON.stringify({ userId: user?.id }),
      });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { notifications: unknown[] }).notifications).toHaveLength(1);
      // Inventory found through the registry the services announced themselves in.
      const catalogue = createClient(InventoryService, createGrpcTransport({ baseUrl: gateway }));
      // Only what the legacy monolith's change data capture brought (its seeded catalogue, under
      // legacy's ids): the mesh itself starts with no product.
      const products = (await catalogue.listProducts({ pageSize: 100 })).products;
      expect(products.every((p) => p.sku.startsWith("LEG-"))).toBe(true);
      // `meshctl status` lists every instance in the mesh's registry, each SERVING, with the
      // version of its package and the commit of the tree up started it from.
      const status = startProcess(process.execPath, [join(root, "tools/meshctl/dist/main.js"), "status"], {
        env: { EVENTS_NAMESPACE: namespace },
      });
      await status.exited;
      const head = spawnSync("git", ["rev-parse", "--short=12", "HEAD"], {
        cwd: root,
        encoding: "utf8",
      }).stdout.trim();
      expect(head).toMatch(/^[0-9a-f]{12}$/);
      const rowOf = (name: string) =>
        new RegExp(
          `^${name}\\s+[0-9a-f]{8}\\s+127\\.0\\.0\\.1:\\d+\\s+0\\.1\\.0\\+${head}(-dirty)?\\s+\\d+s\\s+SERVING$`,
        );
      await waitFor(
        () =>
          ["inventory", "notifications", "payments", "users"].every((n) =>
            status.lines.some((l) => rowOf(n).test(l)),
          ),
        { what: `every service in the registry table:\n${status.lines.join("\n")}` },
      );
      expect(status.lines).toContain(`registry ${registryBucketFor(namespace)} at nats://127.0.0.1:4222:`);
      // No admin exists: users wrote a one-time bootstrap secret, owner-only, and logged only where.
      const secretFile = join(home, "bootstrap-secret");
      expect(statSync(secretFile).mode & 0o777).toBe(0o600);
      const secret = readFileSync(secretFile, "utf8").trim();
      expect(proc.lines.some((l) => l.includes(secretFile))).toBe(true);
      const meshctl = (args: string[], env: Record<string, string> = {}) =>
        startProcess(process.execPath, [join(root, "tools/meshctl/dist/main.js"), ...args], {
          cwd: root,
          env: { MESHWORK_HOME: home, ...env },
        });
      const passwordFile = join(home, "ops-password");
      writeFileSync(passwordFile, "an operator's password\n", { mode: 0o600 });
      const wrongSecret = join(home, "wrong-secret");
      writeFileSync(wrongSecret, "not-the-bootstrap-secret-at-all\n", { mode: 0o600 });
      const ops = [
        "admin",
        "create",
        "--email",
        "ops@example.com",
        "--password-file",
        passwordFile,
        "--gateway",
        gateway,
      ];
      const wrong = meshctl([...ops, "--secret-file", wrongSecret]);
      expect(await wrong.exited).toBe(1);
      expect(wrong.lines.join("\n")).toContain("PermissionDenied: wrong bootstrap secret");

      // `npm run demo`: it makes its admin through the bootstrap secret (no password in the source),
      // then orders through the gateway, each outcome, the notifications, the verdict.
      const demo = startProcess("npm", ["run", "demo", "--", "--gateway", gateway], {
        cwd: root,
        env: { MESHWORK_HOME: home },
      });
      expect(await demo.exited).toBe(0);
      const said = demo.lines.join("\n");
      expect(said).toMatch(/admin demo-admin-[0-9a-f]{8}@meshwork\.local \(created by the demo/);
      expect(statSync(join(home, "demo-admin.json")).mode & 0o777).toBe(0o600);
      expect(existsSync(secretFile)).toBe(false); // spent
      // Accepted once: the same secret again is refused, precisely.
      writeFileSync(wrongSecret, secret, { mode: 0o600 });
      const again = meshctl([...ops, "--secret-file", wrongSecret]);
      expect(await again.exited).toBe(1);
      expect(again.lines.join("\n")).toContain("FailedPrecondition: the bootstrap secret was already used");
      expect(proc.lines.join("\n")).not.toContain(secret);
      expect(said).toMatch(/order 1 \(2 mugs\): .*confirmed\n\s+=> confirmed/);
      expect(said).toContain("=> cancelled: out of stock: insufficient stock for product");
      // Payments down for 3 s, within the saga's transient budget: the order waits and confirms.
      expect(said).toMatch(/order 4 \(a poster, payments down for a moment\): .*confirmed\n\s+=> confirmed/);
      expect(said).toContain("Order confirmed: Your order");
      expect(said).toContain("checker: consistent");

      await proc.stop("SIGINT");
      expect(proc.lines).toContainEqual(expect.stringMatching(/^users\s+\| .*"msg":"stopped"/));
      expect(proc.lines).toContainEqual(expect.stringMatching(/^gateway\s+\| .*"msg":"access"/));
      expect(proc.lines).toContain("meshctl | stopped");
      // The embedded server stops with the mesh, after the services.
      expect(proc.lines).toContain("meshctl | postgres stopped");
      expect(isLivePostgres(pgPid)).toBe(false);
      expect(await portOpen(pgPort)).toBe(false);
      expect(existsSync(join(home, "postgres", "postmaster.pid"))).toBe(false);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 480_000);
});

describe("meshctl up with a Postgres server", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const prefix = uniqueName("mwup");
  const namespace = `${prefix}.`;
  afterAll(async () => {
    await dropMeshDatabases(prefix);
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("gives each service its own database and role, and the service uses them", async () => {
    const proc = startProcess(
      process.execPath,
      [
        join(root, "tools/meshctl/dist/main.js"),
        "up",
        "--ports",
        "auto",
        "--database-url",
        adminUrl(),
        "--db-prefix",
        prefix,
      ],
      { env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace } },
    );
    try {
      const row = await proc.waitForLine((l) => /^users\s+\S+\s+SERVING\s+postgres/.test(l), 240_000);
      expect(row).toContain(`postgres ${prefix}_users (role ${prefix}_users)`);
      const address = row.split(/\s+/)[1];
      const users = createClient(
        UserService,
        createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "2" }),
      );
      await users.registerUser({ email: "pg@example.com", password: "on-postgres", displayName: "Pg" });
      expect(await proc.stop("SIGINT")).toBe(0);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 300_000);
});

describe("meshctl up without a reachable NATS", () => {
  const home = tempHome();
  const namespace = `${uniqueName("t")}.`;
  afterAll(async () => {
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });
  const meshctl = join(root, "tools/meshctl/dist/main.js");

  it("starts the nats-server found on the PATH, in its own store, with a user per process, and stops it afterwards", async () => {
    const proc = startProcess(process.execPath, [meshctl, "up", "--ports", "auto"], {
      env: {
        MESHWORK_HOME: home,
        NATS_URL: "nats://127.0.0.1:1",
        EVENTS_NAMESPACE: namespace,
        DATABASE_URL: "",
      },
    });
    try {
      const row = await proc.waitForLine((l) => /^nats\s+\S+\s+UP\s+started by meshctl/.test(l), 120_000);
      expect(row).toContain(join(home, "nats"));
      const port = Number(row.split(/\s+/)[1]?.split(":")[1]);
      // A client without a user is refused...
      const { connect } = await import("@nats-io/transport-node");
      await expect(connect({ servers: `nats://127.0.0.1:${port}`, reconnect: false })).rejects.toThrow(
        /Authorization Violation/i,
      );
      // ...while the mesh works on its own users: the registry (the gateway routes), events
      // (the notifications), the saga's calls between services, as `npm run demo` shows.
      await proc.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 120_000);
      const gatewayRow = proc.lines.find((l) => /^gateway\s+127\.0\.0\.1:\d+\s+LIVE/.test(l));
      const demo = startProcess(
        "npm",
        ["run", "demo", "--", "--gateway", `http://${gatewayRow?.split(/\s+/)[1]}`],
        // The demo's admin comes from the bootstrap secret users wrote under this mesh's home.
        { cwd: root, env: { MESHWORK_HOME: home } },
      );
      expect(await demo.exited).toBe(0);
      expect(demo.lines.join("\n")).toContain("Order confirmed: Your order");
      expect(demo.lines.join("\n")).toContain("checker: consistent");
      // `meshctl status` reads the registry as meshctl's own admin user.
      const status = startProcess(process.execPath, [meshctl, "status"], {
        env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace, NATS_URL: `nats://127.0.0.1:${port}` },
      });
      await status.exited;
      expect(status.lines).toContainEqual(expect.stringMatching(/^orders\s+[0-9a-f]{8}\s+127\.0\.0\.1:\d+/));
      expect(await proc.stop("SIGINT")).toBe(0);
      expect(await portOpen(port)).toBe(false);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 240_000);

  it("stops with a message saying how to install NATS when there is none", async () => {
    const proc = startProcess(process.execPath, [meshctl, "up", "--ports", "auto"], {
      env: {
        MESHWORK_HOME: home,
        NATS_URL: "nats://127.0.0.1:1",
        PATH: "/nonexistent",
        DATABASE_URL: "",
        EVENTS_NAMESPACE: `${uniqueName("mwnonats")}.`,
      },
    });
    expect(await proc.exited).toBe(1);
    expect(proc.lines.join("\n")).toMatch(
      /no nats-server was found on the PATH.*apt-get install nats-server/s,
    );
  }, 60_000);
});

describe("meshctl up as a supervisor", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const prefix = uniqueName("mwsup");
  const namespace = `${prefix}.`;
  afterAll(async () => {
    await dropMeshDatabases(prefix);
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("restarts a service killed with SIGKILL at the same address while the rest keeps serving, and shows it in status", async () => {
    const proc = startProcess(
      process.execPath,
      [
        join(root, "tools/meshctl/dist/main.js"),
        "up",
        "--ports",
        "auto",
        "--database-url",
        adminUrl(),
        "--db-prefix",
        prefix,
      ],
      { env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace } },
    );
    try {
      await proc.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 240_000);
      const addressOf = (name: string) =>
        proc.lines
          .find((l) => new RegExp(`^${name}\\s+127\\.0\\.0\\.1:\\d+\\s+SERVING`).test(l))
          ?.split(/\s+/)[1];
      const inventory = addressOf("inventory");
      const users = addressOf("users");
      const report = JSON.parse(readFileSync(join(home, "supervisor.json"), "utf8")) as SupervisionReport;
      const victim = report.children.find((c) => c.name === "inventory");
      expect(victim).toMatchObject({ state: "running", restarts: 0, address: inventory });

      process.kill(victim?.pid as number, "SIGKILL");
      await proc.waitForLine((l) =>
        /^meshctl \| inventory exited with SIGKILL \(crash 1\); restarting in \d+ ms$/.test(l),
      );
      // The others keep serving meanwhile.
      const userClient = createClient(
        UserService,
        createConnectTransport({ baseUrl: `http://${users}`, httpVersion: "2" }),
      );
      const { user } = await userClient.registerUser({
        email: "survivor@example.com",
        password: "kept-serving",
        displayName: "Survivor",
      });
      expect(user?.email).toBe("survivor@example.com");
      await proc.waitForLine((l) => l === "meshctl | inventory is back (restart 1)", 60_000);
      expect(await checkHealth(inventory as string)).toBe("SERVING"); // same address as before
      expect(proc.lines).not.toContainEqual(expect.stringMatching(/stopping/));
      expect(proc.lines).toContainEqual(expect.stringMatching(/^inventory\s+running\s+1\s+SIGKILL$/));

      // `meshctl status` shows the restart and how the last process ended.
      const status = startProcess(process.execPath, [join(root, "tools/meshctl/dist/main.js"), "status"], {
        env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace },
      });
      await status.exited;
      expect(status.lines).toContainEqual(expect.stringMatching(/^supervised by meshctl up \(pid \d+\):$/));
      expect(status.lines).toContainEqual(expect.stringMatching(/^inventory\s+running\s+1\s+SIGKILL$/));
      expect(status.lines).toContainEqual(expect.stringMatching(/^users\s+running\s+0\s+-$/));

      expect(await proc.stop("SIGINT")).toBe(0);
      expect(proc.lines).toContain("meshctl | stopped");
      expect(existsSync(join(home, "supervisor.json"))).toBe(false);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 300_000);
});

describe("meshctl up after a meshctl killed with SIGKILL", () => {
  const home = tempHome();
  const namespace = `${uniqueName("t")}.`;
  afterAll(async () => {
    await removeMeshStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });
  const meshctl = join(root, "tools/meshctl/dist/main.js");
  const startUp = () =>
    startProcess(process.execPath, [meshctl, "up", "--ports", "auto"], {
      env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace, DATABASE_URL: "" },
    });
  const addressOf = (lines: string[], name: string) =>
    lines
      .find((l) => new RegExp(`^${name}\\s+127\\.0\\.0\\.1:\\d+\\s+(SERVING|LIVE)`).test(l))
      ?.split(/\s+/)[1];

  it("starts again over what it left (its embedded server reused, its services stopped), and the users registered before are still there", async () => {
    const first = startUp();
    let second: ReturnType<typeof startUp> | undefined;
    try {
      await first.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 240_000);
      const users = createClient(
        UserService,
        createConnectTransport({ baseUrl: `http://${addressOf(first.lines, "users")}`, httpVersion: "2" }),
      );
      const { user } = await users.registerUser({
        email: "kept@example.com",
        password: "survives-restarts",
        displayName: "Kept",
      });
      const report = JSON.parse(readFileSync(join(home, "supervisor.json"), "utf8")) as SupervisionReport;
      const servicePids = report.children.map((c) => c.pid as number);
      const pgPid = readPostmasterPid(join(home, "postgres"))?.pid as number;

      // Killed: no chance to stop anything. Its services and its Postgres server keep running.
      // (Only meshctl: `stop()` would also end what it left in its process group.)
      first.child.kill("SIGKILL");
      await first.exited;
      expect(isLivePostgres(pgPid)).toBe(true);

      second = startUp();
      await second.waitForLine((l) => l === "meshctl | the mesh is up; Ctrl-C stops it", 240_000);
      expect(second.lines).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^meshctl \\| an earlier meshctl up \\(pid ${first.child.pid}\\) was killed and left .*running: stopping them$`,
          ),
        ),
      );
      expect(second.lines).toContainEqual(
        `meshctl | postgres: a server left running by an earlier run holds ${join(home, "postgres")} (pid ${pgPid}, port ${
          second.lines
            .find((l) => l.startsWith("postgres "))
            ?.split(/\s+/)[1]
            ?.split(":")[1]
        }): using it`,
      );
      // Gone (or a zombie whose new parent has yet to reap it).
      const running = (pid: number) => {
        try {
          return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
        } catch {
          return false;
        }
      };
      expect(servicePids.filter(running)).toEqual([]);
      // The user registered before the kill logs in through the new gateway and reads itself back.
      const edge = createClient(
        UserService,
        createGrpcTransport({ baseUrl: `http://${addressOf(second.lines, "gateway")}` }),
      );
      const { accessToken } = await edge.login({ email: "kept@example.com", password: "survives-restarts" });
      const me = await edge.getUser(
        { id: user?.id ?? "" },
        { headers: { authorization: `Bearer ${accessToken}` } },
      );
      expect(me.user?.email).toBe("kept@example.com");
      expect(await second.stop("SIGINT")).toBe(0);
      expect(isLivePostgres(pgPid)).toBe(false);
    } finally {
      if (first.child.exitCode === null) await first.stop("SIGKILL");
      if (second && second.child.exitCode === null) await second.stop("SIGKILL");
    }

    // After a clean stop too: the server starts cold from .meshwork/postgres with the user's row.
    const server = await startLocalPostgres({ dataDir: join(home, "postgres"), port: 0 });
    try {
      const url = new URL(server.adminUrl);
      url.pathname = "/meshwork_users";
      const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
      try {
        expect(await sql`select email from users where email = 'kept@example.com'`).toHaveLength(1);
        // The signing keys are sealed at rest, with the mesh's own key encryption key (owner-only).
        const keys = await sql<
          { sealed: string | null }[]
        >`select private_jwk->>'sealed' as sealed from signing_keys`;
        expect(keys.length).toBeGreaterThan(0);
        expect(keys.map((k) => k.sealed)).toEqual(keys.map(() => "A256GCM"));
        expect(statSync(join(home, "users-key-encryption-key")).mode & 0o777).toBe(0o600);
      } finally {
        await sql.end();
      }
    } finally {
      await server.stop();
    }
  }, 420_000);
});
