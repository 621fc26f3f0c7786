import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { findServices } from "./services.js";
import { instanceName, parseReplicas } from "./up.js";

const root = fileURLToPath(new URL("../../../", import.meta.url));

describe("meshctl up --replicas", () => {
  const services = findServices(root);

  it("takes SERVICE=COUNT pairs for the services of the repository", () => {
    expect(parseReplicas("orders=3,inventory=2", services)).toEqual({ orders: 3, inventory: 2 });
    expect(parseReplicas(" orders=1 , ", services)).toEqual({ orders: 1 });
    expect(parseReplicas("", services)).toEqual({});
  });

  it("refuses what it cannot run, naming the problem", () => {
    expect(() => parseReplicas("ordrs=2", services)).toThrow(
      /no service "ordrs" \(services: users, .*orders/,
    );
    expect(() => parseReplicas("gateway=2", services)).toThrow(/gateway is the edge; it runs once/);
    expect(() => parseReplicas("orders=0", services)).toThrow(/orders=0: from 1 to 16 instances/);
    expect(() => parseReplicas("orders=17", services)).toThrow(/from 1 to 16/);
    expect(() => parseReplicas("orders", services)).toThrow(/"orders" is not SERVICE=COUNT/);
    expect(() => parseReplicas("orders=two", services)).toThrow(/not SERVICE=COUNT/);
  });

  it("names the first instance after its service and the others #2, #3, ...", () => {
    expect([0, 1, 2].map((i) => instanceName("orders", i))).toEqual(["orders", "orders#2", "orders#3"]);
  });
});
