import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { NotificationService } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { removeRegistry } from "@meshwork/discovery";
import { connectNats, streamName } from "@meshwork/events";
import { adminUrl, startProcess, uniqueName, waitFor } from "@meshwork/testing";
import { jetstreamManager } from "@nats-io/jetstream";
import { afterAll, describe, expect, it } from "vitest";
import { checkHealth } from "./health.js";
import { dropServiceDatabase } from "./provision.js";
import { registryBucketFor } from "./registry.js";
import type { SupervisionReport } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** Deletes the streams and the registry bucket a mesh run created in its namespace. */
async function removeStreams(namespace: string): Promise<void> {
  const nc = await connectNats(process.env.NATS_URL ?? "nats://127.0.0.1:4222", "cleanup");
  const jsm = await jetstreamManager(nc);
  for (const s of ["USERS", "PAYMENTS", "ORDERS", "DLQ_NOTIFICATIONS"])
    await jsm.streams.delete(streamName(namespace, s)).catch(() => {});
  await removeRegistry(nc, registryBucketFor(namespace));
  await nc.close();
}

describe("npm start", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const namespace = `${uniqueName("t")}.`;
  afterAll(async () => {
    await removeStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });

  it("starts the mesh, prints the table once every service is SERVING, and stops cleanly on Ctrl-C", async () => {
    // Its own process group, so SIGINT reaches npm, meshctl and the services, as Ctrl-C does.
    const proc = startProcess("npm", ["start", "--", "--ports", "auto"], {
      cwd: root,
      detached: true,
      env: { MESHWORK_HOME: home, DATABASE_URL: "", CI: "true", EVENTS_NAMESPACE: namespace },
    });
    try {
      const row = await proc.waitForLine(
        (l) => /^users\s+127\.0\.0\.1:\d+\s+SERVING\s+pglite/.test(l),
        120_000,
      );
      const address = row.split(/\s+/)[1];
      expect(proc.lines.some((l) => /^SERVICE\s+ADDRESS\s+HEALTH\s+DATABASE$/.test(l))).toBe(true);
      const notifRow = proc.lines.find((l) => /^notifications\s+127\.0\.0\.1:\d+\s+SERVING\s+pglite/.test(l));
      expect(notifRow).toBeDefined();
      for (const name of ["inventory", "payments"]) {
        expect(proc.lines).toContainEqual(
          expect.stringMatching(new RegExp(`^${name}\\s+127\\.0\\.0\\.1:\\d+\\s+SERVING\\s+pglite`)),
        );
      }
      expect(proc.lines).toContainEqual(expect.stringMatching(/^nats\s+127\.0\.0\.1:4222\s+UP\s+external/));
      const gatewayRow = proc.lines.find((l) =>
        /^gateway\s+127\.0\.0\.1:\d+\s+LIVE\s+admin 127\.0\.0\.1:\d+/.test(l),
      );
      expect(gatewayRow).toBeDefined();
      const gateway = `http://${gatewayRow?.split(/\s+/)[1]}`;

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
      // The event reached the notifications service through NATS.
      const notifications = createClient(
        NotificationService,
        createConnectTransport({ baseUrl: `http://${notifRow?.split(/\s+/)[1]}`, httpVersion: "2" }),
      );
      await waitFor(
        async () =>
          (
            await notifications.listNotifications(
              { userId: user?.id ?? "" },
              // Straight to the service: the identity the gateway would send for this user.
              { headers: { "x-meshwork-subject": user?.id ?? "", "x-meshwork-roles": "customer" } },
            )
          ).notifications.length === 1,
      );
      // Through the gateway: Login is public; GetUser needs the token Login gave.
      const edge = createClient(UserService, createGrpcTransport({ baseUrl: gateway }));
      await expect(edge.getUser({ id: user?.id ?? "" })).rejects.toMatchObject({
        code: Code.Unauthenticated,
      });
      const { accessToken } = await edge.login({
        email: "npm-start@example.com",
        password: "started-by-npm",
      });
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
      expect((await catalogue.listProducts({})).products).toEqual([]);
      // `meshctl status` lists every instance in the mesh's registry, each SERVING.
      const status = startProcess(process.execPath, [join(root, "tools/meshctl/dist/main.js"), "status"], {
        env: { EVENTS_NAMESPACE: namespace },
      });
      await status.exited;
      const rowOf = (name: string) =>
        new RegExp(`^${name}\\s+[0-9a-f]{8}\\s+127\\.0\\.0\\.1:\\d+\\s+0\\.1\\.0\\s+\\d+s\\s+SERVING$`);
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
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 180_000);
});

describe("meshctl up with a Postgres server", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const prefix = uniqueName("mwup");
  const namespace = `${prefix}.`;
  afterAll(async () => {
    await dropServiceDatabase(adminUrl(), `${prefix}_users`);
    await dropServiceDatabase(adminUrl(), `${prefix}_notifications`);
    await dropServiceDatabase(adminUrl(), `${prefix}_inventory`);
    await dropServiceDatabase(adminUrl(), `${prefix}_payments`);
    await dropServiceDatabase(adminUrl(), `${prefix}_orders`);
    await removeStreams(namespace);
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
      const row = await proc.waitForLine((l) => /^users\s+\S+\s+SERVING\s+postgres/.test(l), 120_000);
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
  }, 180_000);
});

describe("meshctl up without a reachable NATS", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const namespace = `${uniqueName("t")}.`;
  afterAll(async () => {
    await removeStreams(namespace);
    rmSync(home, { recursive: true, force: true });
  });
  const meshctl = join(root, "tools/meshctl/dist/main.js");

  it("starts the nats-server found on the PATH, in its own store, and stops it afterwards", async () => {
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
      expect(await proc.stop("SIGINT")).toBe(0);
      const net = await import("node:net");
      const open = await new Promise<boolean>((resolve) => {
        const s = net.connect(port, "127.0.0.1");
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      expect(open).toBe(false);
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 180_000);

  it("stops with a message saying how to install NATS when there is none", async () => {
    const proc = startProcess(process.execPath, [meshctl, "up", "--ports", "auto"], {
      env: { MESHWORK_HOME: home, NATS_URL: "nats://127.0.0.1:1", PATH: "/nonexistent", DATABASE_URL: "" },
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
    for (const name of ["users", "notifications", "inventory", "payments", "orders"])
      await dropServiceDatabase(adminUrl(), `${prefix}_${name}`);
    await removeStreams(namespace);
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
