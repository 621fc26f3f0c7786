import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { adminUrl, startProcess, uniqueName } from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from "vitest";
import { dropMeshDatabases, removeMeshStreams } from "../../test/mesh-cleanup.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));

/** Top-level entries a copy leaves out: history, installs, caches and the mesh's local state. */
const NOT_COPIED = new Set([".git", "node_modules", ".turbo", ".meshwork", ".bench"]);

/**
 * A copy of the working tree (sources and built dist/, about 10 MB: a plain copy, so nothing the
 * scaffolder writes can reach the original through a shared inode). Its node_modules links every
 * installed package of the original except the workspace links (`@meshwork/*`), which point into
 * the copy, as in the original: no install, nothing downloaded.
 */
function copyRepository(to: string): void {
  cpSync(root, to, {
    recursive: true,
    verbatimSymlinks: true,
    filter: (src) => !(NOT_COPIED.has(basename(src)) && join(src, "..") === join(root, ".")),
  });
  mkdirSync(join(to, "node_modules"));
  for (const entry of readdirSync(join(root, "node_modules"))) {
    if (entry === "@meshwork") {
      cpSync(join(root, "node_modules", entry), join(to, "node_modules", entry), {
        recursive: true,
        verbatimSymlinks: true,
      });
    } else if (entry !== ".cache") {
      symlinkSync(join(root, "node_modules", entry), join(to, "node_modules", entry));
    }
  }
}

const ESC = String.fromCharCode(27);

/** Runs a command to its end (asynchronously: the test's own timers keep running). */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  return new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn(command, args, { cwd, env: { ...process.env, NO_COLOR: "1", ...env } });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    // Colours off, and any escape that slips through removed, so the output reads as text.
    child.on("close", (code) => resolve({ code, out: out.replaceAll(ESC, "").replace(/\[[0-9;]*m/g, "") }));
  });
}

const gitStatus = () => spawnSync("git", ["status", "--porcelain"], { cwd: root, encoding: "utf8" }).stdout;

describe("meshctl new service, in a temporary copy of the repository", () => {
  const base = mkdtempSync(join(tmpdir(), "mw-scaffold-"));
  const repo = join(base, "repo");
  const home = join(base, "home");
  const namespace = `${uniqueName("t")}.`;
  const prefix = uniqueName("mw_scaf");
  const NAME = "reviews";
  const statusBefore = gitStatus();
  let scaffold: { code: number | null; out: string };

  beforeAll(async () => {
    copyRepository(repo);
    mkdirSync(home);
    chmodSync(base, 0o755);
    scaffold = await run(
      process.execPath,
      [
        "tools/meshctl/dist/main.js",
        "new",
        "service",
        NAME,
        "--publishes-events",
        "--consumes-events",
        "users",
      ],
      repo,
    );
  }, 600_000);

  afterAll(async () => {
    await dropMeshDatabases(prefix, [NAME]);
    await removeMeshStreams(namespace, { extra: [NAME.toUpperCase(), `DLQ_${NAME.toUpperCase()}`] });
    rmSync(base, { recursive: true, force: true });
  });

  it("writes the contract, the service in the house layout, its migration, and registers it; the original is untouched", () => {
    expect(scaffold.out).toMatch(/next: npm test -w @meshwork\/reviews/);
    expect(scaffold.code).toBe(0);
    for (const file of [
      "proto/meshwork/reviews/v1/reviews.proto",
      "proto/meshwork/reviews/v1/events.proto",
      "libs/contracts/src/gen/meshwork/reviews/v1/reviews_pb.ts",
      "libs/contracts/src/gen/meshwork/reviews/v1/events_pb.ts",
      "apps/reviews/src/main.ts",
      "apps/reviews/src/config.ts",
      "apps/reviews/src/server.ts",
      "apps/reviews/src/ports/rpc/reviews-service.ts",
      "apps/reviews/src/ports/events/on-event.ts",
      "apps/reviews/src/app/commands/create-item.ts",
      "apps/reviews/src/app/queries/list-items.ts",
      "apps/reviews/src/domain/item.ts",
      "apps/reviews/src/adapters/db/schema.ts",
      "apps/reviews/drizzle/0000_init.sql",
      "apps/reviews/src/reviews.int.test.ts",
      "apps/reviews/dist/main.js",
      "infra/k8s/base/services/reviews.yaml",
    ]) {
      expect(existsSync(join(repo, file)), file).toBe(true);
    }
    const proto = readFileSync(join(repo, "proto/meshwork/reviews/v1/reviews.proto"), "utf8");
    expect(proto.match(/option \(meshwork\.api\.v1\.access\)/g)).toHaveLength(3);
    expect(proto.match(/option idempotency_level/g)).toHaveLength(3);
    const migration = readFileSync(join(repo, "apps/reviews/drizzle/0000_init.sql"), "utf8");
    for (const table of ["items", "outbox", "inbox", "received_events"])
      expect(migration).toContain(`"${table}"`);
    const pkg = JSON.parse(readFileSync(join(repo, "apps/reviews/package.json"), "utf8"));
    expect(pkg.meshwork).toEqual({
      service: NAME,
      port: 50056,
      main: "dist/main.js",
      database: true,
      consumes: ["users"],
    });
    expect(readFileSync(join(repo, "libs/contracts/src/index.ts"), "utf8")).toContain(
      "file_meshwork_reviews_v1_reviews,",
    );
    expect(readFileSync(join(repo, "infra/envoy/envoy.yaml"), "utf8")).toContain(
      "/meshwork.reviews.v1.ReviewsService/",
    );
    expect(readFileSync(join(repo, "infra/nats/nats.conf"), "utf8")).toMatch(
      /user: "reviews"[^\n]*"\$JS\.API\.CONSUMER\.CREATE\.USERS"/,
    );
    expect(gitStatus()).toBe(statusBefore);
  });

  it("the new service passes its own typecheck, lint and tests", async () => {
    const dir = join(repo, "apps", NAME);
    const typecheck = await run("npx", ["tsc", "--noEmit", "-p", "."], dir);
    expect(typecheck.out).toBe("");
    expect(typecheck.code).toBe(0);
    const lint = await run("npx", ["biome", "check", "--error-on-warnings", "."], dir);
    expect(lint.code, lint.out).toBe(0);
    const tests = await run("npx", ["vitest", "run"], dir, { CI: "" });
    expect(tests.out).toMatch(/Tests\s+7 passed \(7\)/);
    expect(tests.code, tests.out).toBe(0);
  }, 300_000);

  it("compose, its Postgres, NATS, Prometheus, Envoy and Kubernetes know it (meshctl's own checks of them pass in the copy)", async () => {
    const checks = await run(
      "npx",
      ["vitest", "run", "src/compose.test.ts", "src/envoy.test.ts", "src/k8s.test.ts"],
      join(repo, "tools/meshctl"),
      {
        CI: "",
      },
    );
    expect(checks.out).toMatch(/Test Files\s+3 passed/);
    expect(checks.code, checks.out).toBe(0);
  }, 300_000);

  it("is SERVING under meshctl up with no hand edit, behind the gateway with its access policies", async () => {
    const proc = startProcess(
      process.execPath,
      [
        join(repo, "tools/meshctl/dist/main.js"),
        "up",
        "--ports",
        "auto",
        "--database-url",
        adminUrl(),
        "--db-prefix",
        prefix,
      ],
      { cwd: repo, env: { MESHWORK_HOME: home, EVENTS_NAMESPACE: namespace, LOG_LEVEL: "warn" } },
    );
    // Whatever ends the test (an assertion, a wait's deadline, vitest's own timeout), up's own
    // words are in the report: the processes it waits for and why, crashes, give-ups.
    onTestFailed(() => {
      process.stderr.write(`meshctl up in the copy said:\n${proc.lines.slice(-80).join("\n")}\n`);
    });
    try {
      // Both deadlines together stay well inside the test's timeout.
      const row = await proc.waitForLine((l) => /^reviews\s+\S+\s+SERVING\s+postgres/.test(l), 150_000);
      expect(row).toContain(`postgres ${prefix}_reviews (role ${prefix}_reviews)`);
      const gatewayRow = await proc.waitForLine((l) => /^gateway\s+127\.0\.0\.1:\d+\s+LIVE/.test(l), 60_000);
      const gateway = `http://${gatewayRow.split(/\s+/)[1]}`;
      const call = (method: string, body: unknown, token?: string) =>
        fetch(`${gateway}/${method}`, {
          method: "POST",
          headers: {
            "content-type": "application/json",
            ...(token ? { authorization: `Bearer ${token}` } : {}),
          },
          body: JSON.stringify(body),
        });
      // Public: anyone lists. Authenticated: CreateItem without a token is refused at the edge.
      const list = await call("meshwork.reviews.v1.ReviewsService/ListItems", {});
      expect(list.status).toBe(200);
      expect(await list.json()).toEqual({});
      const anonymous = await call("meshwork.reviews.v1.ReviewsService/CreateItem", {
        requestId: randomUUID(),
        name: "x",
      });
      expect(anonymous.status).toBe(401);
      // A user's token reaches it, and it answers with the caller the gateway vouched for.
      const email = `${uniqueName("u")}@example.com`;
      expect(
        (
          await call("meshwork.users.v1.UserService/RegisterUser", {
            email,
            password: "scaffolded-1",
            displayName: "S",
          })
        ).status,
      ).toBe(200);
      const login = (await (
        await call("meshwork.users.v1.UserService/Login", { email, password: "scaffolded-1" })
      ).json()) as {
        accessToken: string;
        user: { id: string };
      };
      const created = await call(
        "meshwork.reviews.v1.ReviewsService/CreateItem",
        { requestId: randomUUID(), name: "first" },
        login.accessToken,
      );
      expect(created.status).toBe(200);
      expect(((await created.json()) as { item: { ownerId: string } }).item.ownerId).toBe(login.user.id);
      expect(await proc.stop("SIGINT")).toBe(0);
    } finally {
      // SIGINT, not SIGKILL: meshctl stops the services it started (a killed one would orphan
      // them). Bounded all the same: an up that does not end is reported, not waited for.
      if (proc.child.exitCode === null) {
        proc.child.kill("SIGINT");
        const ended = await Promise.race([
          proc.exited,
          new Promise((r) => setTimeout(() => r("hung"), 45_000).unref()),
        ]);
        if (ended === "hung") {
          proc.child.kill("SIGKILL");
          process.stderr.write("meshctl up did not stop within 45 s of SIGINT: killed\n");
        }
      }
    }
  }, 300_000);
});
