import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { adminUrl, startProcess, uniqueName } from "@meshwork/testing";
import { afterAll, describe, expect, it } from "vitest";
import { dropServiceDatabase } from "./provision.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

describe("npm start", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  afterAll(() => rmSync(home, { recursive: true, force: true }));

  it("starts the mesh, prints the table once every service is SERVING, and stops cleanly on Ctrl-C", async () => {
    // Its own process group, so SIGINT reaches npm, meshctl and the services, as Ctrl-C does.
    const proc = startProcess("npm", ["start", "--", "--ports", "auto"], {
      cwd: root,
      detached: true,
      env: { MESHWORK_HOME: home, DATABASE_URL: "", CI: "true" },
    });
    try {
      const row = await proc.waitForLine(
        (l) => /^users\s+127\.0\.0\.1:\d+\s+SERVING\s+pglite/.test(l),
        120_000,
      );
      const address = row.split(/\s+/)[1];
      expect(proc.lines.some((l) => /^SERVICE\s+ADDRESS\s+HEALTH\s+DATABASE$/.test(l))).toBe(true);

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
      await proc.waitForLine((l) => l.startsWith("users | ") && l.includes("RegisterUser"));

      await proc.stop("SIGINT");
      expect(proc.lines).toContainEqual(expect.stringMatching(/^users \| .*"msg":"stopped"/));
      expect(proc.lines).toContain("meshctl | stopped");
    } finally {
      if (proc.child.exitCode === null) await proc.stop("SIGKILL");
    }
  }, 180_000);
});

describe("meshctl up with a Postgres server", () => {
  const home = mkdtempSync(join(tmpdir(), "mw-home-"));
  const prefix = uniqueName("mwup");
  afterAll(async () => {
    await dropServiceDatabase(adminUrl(), `${prefix}_users`);
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
      { env: { MESHWORK_HOME: home } },
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
