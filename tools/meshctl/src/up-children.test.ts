import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { waitFor } from "@meshwork/testing";
import { describe, expect, it } from "vitest";
import type { ServiceManifest } from "./services.js";
import { hostPort, type Running, spawnChild } from "./up-children.js";

describe("hostPort", () => {
  it("brackets an IPv6 host, as a URL's authority needs it", () => {
    expect(hostPort("::1", 50051)).toBe("[::1]:50051");
    expect(hostPort("::", 8080)).toBe("[::]:8080");
    expect(new URL(`http://${hostPort("::1", 50051)}/`).port).toBe("50051");
  });

  it("leaves an IPv4 host, a name and an already bracketed host as they are", () => {
    expect(hostPort("127.0.0.1", 50051)).toBe("127.0.0.1:50051");
    expect(hostPort("localhost", 80)).toBe("localhost:80");
    expect(hostPort("[::1]", 50051)).toBe("[::1]:50051");
  });
});

describe("spawnChild", () => {
  it("starts a service with its own Node options in NODE_OPTIONS, before the environment's, and no semi-space default of meshctl's", async () => {
    const dir = mkdtempSync(join(tmpdir(), "meshwork-child-"));
    const file = join(dir, "main.js");
    writeFileSync(
      file,
      "console.log(JSON.stringify({ options: process.env.NODE_OPTIONS, argv: process.execArgv }))",
    );
    const manifest: ServiceManifest = {
      name: "edge",
      port: 0,
      dir,
      main: "main.js",
      database: false,
      kind: "gateway",
      nodeOptions: "--max-semi-space-size=16",
    };
    const r: Running = { manifest, name: "edge", env: {}, database: "" };
    const lines: string[] = [];
    const out = new PassThrough();
    out.on("data", (chunk: Buffer) => lines.push(...chunk.toString().split("\n").filter(Boolean)));
    const saved = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = "--max-old-space-size=512";
    try {
      const child = spawnChild(r, { file, bundled: true }, "", {
        root: dir,
        out,
        buildEnv: {},
        telemetry: undefined,
        logLevel: "info",
      } as Parameters<typeof spawnChild>[3]);
      await child.exited;
      await waitFor(() => lines.some((l) => l.includes('"options"')), { what: "the child's line" });
    } finally {
      if (saved === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = saved;
      rmSync(dir, { recursive: true, force: true });
    }
    const seen = JSON.parse(lines.find((l) => l.includes('"options"')) ?? "{}") as {
      options?: string;
      argv?: string[];
    };
    expect(seen.options).toBe("--max-semi-space-size=16 --max-old-space-size=512");
    expect(seen.argv).toEqual([]);
  });
});
