import { ConfigError } from "@meshwork/runtime";
import { describe, expect, it } from "vitest";
import { loadConfig, parseUpstreams } from "./config.js";

describe("gateway config", () => {
  it("defaults to port 8080, admin on loopback 9901, the services' default ports", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8080,
      adminHost: "127.0.0.1",
      adminPort: 9901,
      defaultTimeoutMs: 15_000,
    });
    expect(c.upstreams).toEqual({
      users: ["http://127.0.0.1:50051"],
      notifications: ["http://127.0.0.1:50055"],
    });
  });

  it("reads several endpoints per cluster and names what is wrong", () => {
    expect(parseUpstreams(" users = http://a:1 , http://b:2/ ; x.y=http://c:3")).toEqual({
      users: ["http://a:1", "http://b:2"],
      "x.y": ["http://c:3"],
    });
    expect(() => parseUpstreams("users")).toThrow(/<cluster>=<url>/);
    expect(() => parseUpstreams("users=https://a:1")).toThrow(/only http:\/\//);
    expect(() => loadConfig({ UPSTREAMS: "=http://a:1" })).toThrow(ConfigError);
    expect(() => loadConfig({ UPSTREAMS: "users=not a url" })).toThrow(/UPSTREAMS/);
  });
});
