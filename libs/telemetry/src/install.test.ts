import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { NODE_SDK_MODULE } from "./telemetry.js";

/**
 * Every process of the mesh loads the OpenTelemetry SDK at start-up. Its experimental packages
 * (0.x) pin the stable ones (2.x) to exact versions, so one package.json asking for a newer patch
 * (`^2.12.1` while sdk-node wants `2.12.0`) makes npm install a private copy of core, resources,
 * sdk-metrics and otlp-transformer under nearly every exporter. Measured on the users service
 * (a `Module.prototype._compile` hook counting what it compiles): 2,368 CommonJS modules (8.0 MB
 * of source) with the copies, 559 (3.2 MB) without, and about a third less start-up CPU. This test
 * keeps the install at one copy of each.
 */
describe("the OpenTelemetry install", () => {
  it("has one version of each @opentelemetry package (no nested copies a service would load again)", () => {
    const lockFile = fileURLToPath(new URL("../../../package-lock.json", import.meta.url));
    const lock = JSON.parse(readFileSync(lockFile, "utf8")) as {
      packages: Record<string, { version?: string; dev?: boolean }>;
    };
    const copies = new Map<string, string[]>();
    for (const [path, entry] of Object.entries(lock.packages)) {
      const name = /node_modules\/(@opentelemetry\/[^/]+)$/.exec(path)?.[1];
      if (!name || entry.dev) continue; // test-only copies are never loaded by a service
      copies.set(name, [...(copies.get(name) ?? []), `${path}@${entry.version}`]);
    }
    expect(copies.size).toBeGreaterThan(10); // the lock was read, and it holds the SDK
    const duplicated = [...copies].filter(([, paths]) => paths.length > 1);
    expect(duplicated, "align the versions in the package.json files, then npm dedupe").toEqual([]);
  });

  it("loads NodeSDK from its own module: the SDK's class, without the declarative-configuration code", () => {
    const load = createRequire(import.meta.url);
    const own = load(NODE_SDK_MODULE) as { NodeSDK: unknown };
    const index = load("@opentelemetry/sdk-node") as { NodeSDK: unknown };
    expect(own.NodeSDK).toBeTypeOf("function");
    expect(own.NodeSDK).toBe(index.NodeSDK);
    // In a fresh process: what loading it pulls in.
    const loaded = (module: string) =>
      spawnSync(
        process.execPath,
        ["-e", `require(${JSON.stringify(module)});console.log(Object.keys(require.cache).join("\\n"))`],
        { cwd: fileURLToPath(new URL("..", import.meta.url)), encoding: "utf8" },
      ).stdout.split("\n");
    const configuration = (files: string[]) =>
      files.filter((f) => f.includes("@opentelemetry/configuration")).length;
    expect(configuration(loaded("@opentelemetry/sdk-node"))).toBeGreaterThan(0); // what the index costs
    expect(configuration(loaded(NODE_SDK_MODULE))).toBe(0);
    // The loader a bundle follows names that module by a literal require.
    const modules = readFileSync(fileURLToPath(new URL("./otel-modules.cts", import.meta.url)), "utf8");
    expect(modules).toContain(`require(${JSON.stringify(NODE_SDK_MODULE)})`);
  });
});
