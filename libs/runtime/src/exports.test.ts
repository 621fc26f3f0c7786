import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as publicApi from "./index.js";
import * as internal from "./internal.js";

const INTERNALS = [
  "GuardedSessionManager",
  "StreamTable",
  "adoptStreamTable",
  "sessionStreams",
  "heapGrowingPercent",
  "setHeapGrowingPercent",
];

describe("the runtime's public API and its internal subpath", () => {
  it("keeps transport internals out of @meshwork/runtime and in @meshwork/runtime/internal", () => {
    for (const name of INTERNALS) {
      expect(Object.keys(publicApi)).not.toContain(name);
      expect(Object.keys(internal)).toContain(name);
    }
    expect(Object.keys(publicApi)).toEqual(
      expect.arrayContaining(["createService", "createClientTransport"]),
    );
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
      exports: Record<string, { default: string }>;
    };
    expect(pkg.exports["./internal"]?.default).toBe("./dist/internal.js");
  });

  it("has the deadline interceptor depend on the neutral early-end module, not on the fast path", () => {
    const source = readFileSync(new URL("./interceptors/deadline.ts", import.meta.url), "utf8");
    expect(source).not.toMatch(/from "\.\.\/grpc-unary\.js"/);
    expect(source).toMatch(/from "\.\.\/call-end\.js"/);
  });
});
