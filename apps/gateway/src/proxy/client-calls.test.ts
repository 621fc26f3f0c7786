import { describe, expect, it } from "vitest";
import { ClientCalls } from "./client-calls.js";

describe("ClientCalls", () => {
  it("holds bytes per address up to the address's limit", () => {
    const clients = new ClientCalls(10, 100);
    expect(clients.hold("10.0.0.1", 60)).toBe(true);
    expect(clients.hold("10.0.0.1", 50)).toBe(false); // 110 > 100: not counted
    expect(clients.held("10.0.0.1")).toBe(60);
    expect(clients.hold("10.0.0.2", 100)).toBe(true); // another address has its own share
  });

  it("refuses past the gateway's total even when every address is within its own limit", () => {
    const clients = new ClientCalls(10, 100, 250);
    expect(clients.hold("10.0.0.1", 100)).toBe(true);
    expect(clients.hold("10.0.0.2", 100)).toBe(true);
    expect(clients.hold("10.0.0.3", 60)).toBe(false); // 260 > 250 in all
    expect(clients.held("10.0.0.3")).toBe(0);
    expect(clients.heldTotal()).toBe(200);
    clients.unhold("10.0.0.1", 40);
    expect(clients.heldTotal()).toBe(160);
    expect(clients.hold("10.0.0.3", 60)).toBe(true); // room again once others let go
    expect(clients.heldTotal()).toBe(220);
  });

  it("lets go no more than an address holds, so the total never drifts", () => {
    const clients = new ClientCalls(10, 100, 250);
    clients.hold("10.0.0.1", 30);
    clients.unhold("10.0.0.1", 50); // more than held
    clients.unhold("10.0.0.9", 20); // an address holding nothing
    expect(clients.held("10.0.0.1")).toBe(0);
    expect(clients.heldTotal()).toBe(0);
    expect(clients.hold("10.0.0.2", 100)).toBe(true);
    expect(clients.heldTotal()).toBe(100);
  });

  it("counts calls per address up to the call limit", () => {
    const clients = new ClientCalls(2);
    expect(clients.take("a")).toBe(true);
    expect(clients.take("a")).toBe(true);
    expect(clients.take("a")).toBe(false);
    clients.release("a");
    expect(clients.count("a")).toBe(1);
  });
});
