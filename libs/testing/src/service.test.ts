import { describe, expect, it } from "vitest";
import { startService, uniqueNamespace } from "./service.js";

describe("startService", () => {
  it("starts a process in a namespace of its own, ending in '.', unless one is given", async () => {
    const print = ["-e", "console.log('ns=' + process.env.EVENTS_NAMESPACE)"];
    const a = startService(process.execPath, print);
    const b = startService(process.execPath, print);
    const shared = uniqueNamespace("mesh");
    const c = startService(process.execPath, print, { env: { EVENTS_NAMESPACE: shared } });
    for (const p of [a, b, c]) await p.exited;
    expect(a.namespace).toMatch(/^t_[0-9a-f]{12}\.$/);
    expect(a.namespace).not.toBe(b.namespace);
    expect(c.namespace).toBe(shared);
    for (const p of [a, b, c]) expect(p.lines).toEqual([`ns=${p.namespace}`]);
  });
});
