import { describe, expect, it } from "vitest";
import {
  DefaultNamespaceUnderTestError,
  isUnderTest,
  refuseDefaultNamespaceUnderTest,
} from "./namespace-guard.js";

describe("refuseDefaultNamespaceUnderTest", () => {
  it("refuses the default namespace under vitest, naming the variable and the marker", () => {
    for (const env of [{ VITEST: "true" }, { VITEST: "true", EVENTS_NAMESPACE: "" }]) {
      expect(() => refuseDefaultNamespaceUnderTest(env, "orders")).toThrow(DefaultNamespaceUnderTestError);
      expect(() => refuseDefaultNamespaceUnderTest(env, "orders")).toThrow(
        /^orders: EVENTS_NAMESPACE is empty under test \(VITEST=true\)/,
      );
    }
    expect(() => refuseDefaultNamespaceUnderTest({ NODE_ENV: "test" }, "meshctl up")).toThrow(
      /^meshctl up: EVENTS_NAMESPACE is empty under test \(NODE_ENV=test\)/,
    );
  });

  it("lets a namespace of its own through, and does nothing outside a test", () => {
    expect(() =>
      refuseDefaultNamespaceUnderTest({ VITEST: "true", EVENTS_NAMESPACE: "t1." }, "x"),
    ).not.toThrow();
    expect(() => refuseDefaultNamespaceUnderTest({ NODE_ENV: "production" }, "x")).not.toThrow();
    expect(() => refuseDefaultNamespaceUnderTest({}, "x")).not.toThrow();
  });

  it("sees this test run as under test (what a process it spawns inherits)", () => {
    expect(isUnderTest(process.env)).toBe(true);
  });
});
