import { describe, expect, it } from "vitest";
import { buildCommit, packageVersion, versionWithCommit } from "./version.js";

describe("packageVersion", () => {
  it("reads the version of the package a module belongs to, and says 0.0.0 when there is none", () => {
    expect(packageVersion(import.meta.url)).toBe("0.1.0");
    expect(packageVersion("file:///nowhere/at/all/src/x.js")).toBe("0.0.0");
  });
});

describe("buildCommit", () => {
  it("reads MESHWORK_BUILD_COMMIT when it is a commit id (short or full, -dirty allowed)", () => {
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: "3f2a9c1d0b7e" })).toBe("3f2a9c1d0b7e");
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: " 3F2A9C1 " })).toBe("3f2a9c1");
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: `${"a".repeat(40)}-dirty` })).toBe(`${"a".repeat(40)}-dirty`);
  });

  it("says nothing rather than something that is not a commit id", () => {
    expect(buildCommit({})).toBeUndefined();
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: "" })).toBeUndefined();
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: "main" })).toBeUndefined();
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: "abc12" })).toBeUndefined();
    expect(buildCommit({ MESHWORK_BUILD_COMMIT: "abc1234\n# HELP injected" })).toBeUndefined();
  });

  it("joins a version and a commit as semver build metadata", () => {
    expect(versionWithCommit("0.4.1", "3f2a9c1")).toBe("0.4.1+3f2a9c1");
    expect(versionWithCommit("0.4.1", undefined)).toBe("0.4.1");
  });
});
