import { describe, expect, it } from "vitest";
import { hostPort } from "./up-children.js";

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
