import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { owningService, releaseCheck } from "./check.js";

const root = fileURLToPath(new URL("../../../../", import.meta.url));
const buf = join(root, "node_modules/.bin/buf");

const BUF_YAML = `version: v2
modules:
  - path: proto
    breaking:
      use: [FILE]
`;

const orders = (fields: string) => `syntax = "proto3";
package meshwork.orders.v1;
message Order {
${fields}
}
`;

const annotations = (fields: string) => `syntax = "proto3";
package meshwork.api.v1;
message Access {
${fields}
}
`;

/**
 * A small repository of its own (git, buf.yaml, a service's contract and a shared one), where
 * each step is a commit: the check runs the real `buf breaking` against the commit before.
 */
describe("release check: a breaking contract change needs a major changeset of its service (real buf, real git)", () => {
  const repo = mkdtempSync(join(tmpdir(), "mw-release-"));
  afterAll(() => rmSync(repo, { recursive: true, force: true }));
  const git = (...args: string[]) => {
    const r = spawnSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...args], {
      cwd: repo,
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
    return r.stdout.trim();
  };
  const write = (path: string, text: string) => {
    mkdirSync(dirname(join(repo, path)), { recursive: true });
    writeFileSync(join(repo, path), text);
  };
  const commit = (message: string) => {
    git("add", "-A");
    git("commit", "-qm", message);
    return git("rev-parse", "HEAD");
  };
  const check = (against: string) => {
    const lines: string[] = [];
    const code = releaseCheck({ root: repo, against, buf, say: (l) => lines.push(l) });
    return { code, out: lines.join("\n") };
  };

  git("init", "-q");
  write("buf.yaml", BUF_YAML);
  write("proto/meshwork/orders/v1/orders.proto", orders("  string id = 1;\n  string note = 2;"));
  write("proto/meshwork/api/v1/annotations.proto", annotations("  string role = 1;\n  bool public = 2;"));
  write(".changeset/config.json", "{}\n");
  write(".changeset/README.md", '---\n"@meshwork/orders": major\n---\nnot a changeset\n');
  const first = commit("contracts");

  it("passes a compatible change, and says what it compared with", () => {
    write(
      "proto/meshwork/orders/v1/orders.proto",
      orders("  string id = 1;\n  string note = 2;\n  int32 n = 3;"),
    );
    const added = commit("add a field");
    expect(check(first)).toEqual({
      code: 0,
      out: `release check: no breaking contract change against ${first}`,
    });
    expect(check(added).code).toBe(0);
  });

  it("refuses a breaking change to a service's contract without a major bump, naming the service and the fix", () => {
    const before = git("rev-parse", "HEAD");
    write("proto/meshwork/orders/v1/orders.proto", orders("  string id = 1;\n  int32 n = 3;"));
    write(".changeset/calm-owls.md", '---\n"@meshwork/orders": minor\n---\n\nDrop note.\n');
    commit("drop a field, minor only");
    const { code, out } = check(before);
    expect(code).toBe(1);
    expect(out).toMatch(
      /proto\/meshwork\/orders\/v1\/orders\.proto:\d+: .*"2".*\(FIELD_NO_DELETE\): needs a major bump of @meshwork\/orders/,
    );
    expect(out).toContain("@meshwork/orders breaks its contract without a major bump: run `npx changeset`");
  });

  it("lets it through once the service's package has a pending major changeset", () => {
    const before = git("rev-parse", "HEAD~1");
    write(
      ".changeset/calm-owls.md",
      '---\n"@meshwork/orders": major\n---\n\nDrop note: callers must stop sending it.\n',
    );
    commit("major bump");
    const { code, out } = check(before);
    expect(out).toContain("allowed: @meshwork/orders has a pending major changeset");
    expect(code).toBe(0);
  });

  it("never lets through a breaking change no service owns (the shared annotations)", () => {
    const before = git("rev-parse", "HEAD");
    write("proto/meshwork/api/v1/annotations.proto", annotations("  string role = 1;"));
    commit("drop a shared field");
    const { code, out } = check(before);
    expect(code).toBe(1);
    expect(out).toMatch(/annotations\.proto:\d+: .*: no service owns it: not allowed/);
  });

  it("says buf could not run (a ref that does not exist) instead of passing", () => {
    const { code, out } = check("no-such-ref");
    expect(code).toBe(2);
    expect(out).toMatch(/^release check: buf breaking failed \(exit \d+\)/);
  });

  it("knows which service owns a contract file", () => {
    expect(owningService("proto/meshwork/orders/v1/events.proto")).toBe("orders");
    expect(owningService("meshwork/users/v1/users.proto")).toBe("users");
    expect(owningService("meshwork/api/v1/annotations.proto")).toBeUndefined();
    expect(owningService("envoy/config/route/v3/route.proto")).toBeUndefined();
  });
});
