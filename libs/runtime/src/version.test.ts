import { describe, expect, it } from "vitest";
import { packageVersion } from "./version.js";

describe("packageVersion", () => {
  it("reads the version of the package a module belongs to, and says 0.0.0 when there is none", () => {
    expect(packageVersion(import.meta.url)).toBe("0.1.0");
    expect(packageVersion("file:///nowhere/at/all/src/x.js")).toBe("0.0.0");
  });
});
