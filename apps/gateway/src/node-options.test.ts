import { describe, expect, it } from "vitest";
import { GATEWAY_NODE_OPTIONS, semiSpaceMbOf } from "./node-options.js";

describe("the gateway's Node options", () => {
  it("come from its package.json and set V8's young generation (so no launcher's default replaces it)", () => {
    expect(semiSpaceMbOf(GATEWAY_NODE_OPTIONS, [])).toBe(16);
  });

  it("are read as Node applies them: the last flag wins, the command line after NODE_OPTIONS", () => {
    expect(semiSpaceMbOf("", [])).toBeUndefined();
    expect(semiSpaceMbOf("--max-semi-space-size=4 --max-old-space-size=512", [])).toBe(4);
    expect(semiSpaceMbOf("--max-semi-space-size=4 --max-semi-space-size 8", [])).toBe(8);
    expect(semiSpaceMbOf("--max-semi-space-size=4", ["--max_semi_space_size=16"])).toBe(16);
    expect(semiSpaceMbOf("--max-semi-space-size=lots", [])).toBeUndefined();
  });
});
