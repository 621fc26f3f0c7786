import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { meshworkFiles } from "@meshwork/contracts";
import { describe, expect, it } from "vitest";
import { sideOf } from "./cutover.js";
import { diffJson, ignored } from "./diff.js";
import { findHttpRoute, httpRoutesOf, matchTemplate, parseTemplate } from "./http-rules.js";
import { parseRouteSettings } from "./settings.js";
import { buildRequest, restError } from "./transcode.js";

describe("REST rules from the contracts", () => {
  const routes = httpRoutesOf(meshworkFiles);

  it("reads every google.api.http rule, with its verb, template, body and response body", () => {
    expect(routes.map((r) => `${r.verb} ${r.template} -> ${r.name}`).sort()).toEqual([
      "GET /api/orders/{id} -> GetOrder",
      "GET /api/products -> ListProducts",
      "GET /api/products/{id} -> GetProduct",
      "GET /api/users/{id} -> GetUser",
      "GET /api/users/{user_id}/orders -> ListOrders",
      "POST /api/login -> Login",
      "POST /api/orders -> PlaceOrder",
      "POST /api/users -> RegisterUser",
    ]);
    const place = routes.find((r) => r.name === "PlaceOrder")!;
    expect(place).toMatchObject({
      body: "*",
      responseBody: "order",
      safe: false,
      rpcPath: "/meshwork.orders.v1.OrderService/PlaceOrder",
    });
    expect(routes.find((r) => r.name === "ListProducts")?.safe).toBe(true);
  });

  it("matches paths against templates and binds the variables (percent-decoded)", () => {
    expect(matchTemplate(parseTemplate("/api/products/{id}"), "/api/products/a%20b")).toEqual(
      new Map([["id", "a b"]]),
    );
    expect(matchTemplate(parseTemplate("/api/products/{id}"), "/api/products/")).toBeUndefined();
    expect(matchTemplate(parseTemplate("/api/products/{id}"), "/api/products/1/x")).toBeUndefined();
    expect(matchTemplate(parseTemplate("/v1/{name=**}"), "/v1/a/b")).toEqual(new Map([["name", "a/b"]]));
    expect(findHttpRoute(routes, "GET", "/api/users/1/orders")?.vars).toEqual(new Map([["user_id", "1"]]));
    expect(findHttpRoute(routes, "GET", "/api/users/1/carts")).toBeUndefined();
    expect(findHttpRoute(routes, "DELETE", "/api/products/1")).toBeUndefined();
    expect(() => parseTemplate("api/x")).toThrow(/must start with/);
  });

  it("builds the request from body, path and query, typed by the schema, and names bad input", () => {
    const list = routes.find((r) => r.name === "ListProducts")!;
    const bytes = buildRequest(
      list,
      new Map(),
      new URLSearchParams("page_size=5&pageToken=abc"),
      Buffer.alloc(0),
    );
    expect(fromBinary(list.method.input, bytes)).toMatchObject({ pageSize: 5, pageToken: "abc" });
    expect(() => buildRequest(list, new Map(), new URLSearchParams("colour=red"), Buffer.alloc(0))).toThrow(
      /colour/,
    );
    expect(() => buildRequest(list, new Map(), new URLSearchParams(), Buffer.from("{}"))).toThrow(
      /takes no body/,
    );
    const place = routes.find((r) => r.name === "PlaceOrder")!;
    expect(() => buildRequest(place, new Map(), new URLSearchParams(), Buffer.from("{"))).toThrow(/not JSON/);
    expect(() => buildRequest(place, new Map(), new URLSearchParams(), Buffer.from("[]"))).toThrow(
      /JSON object/,
    );
    expect(() => buildRequest(place, new Map(), new URLSearchParams(), Buffer.from('{"nope":1}'))).toThrow(
      /nope/,
    );
  });

  it("maps gRPC codes to HTTP statuses as Envoy's transcoder does", () => {
    expect(restError(Code.NotFound, "x")).toEqual({
      status: 404,
      body: { error: "not_found", message: "x" },
    });
    expect(restError(Code.FailedPrecondition, "x").status).toBe(400);
    expect(restError(Code.Unauthenticated, "x").status).toBe(401);
    expect(restError(Code.ResourceExhausted, "x")).toMatchObject({
      status: 429,
      body: { error: "resource_exhausted" },
    });
  });
});

describe("comparing answers", () => {
  it("names each differing field, skipping ignored ones (globs)", () => {
    const a = { products: [{ id: "1", on_hand: 7, create_time: "t1" }], next_page_token: "a" };
    const b = { products: [{ id: "2", on_hand: 9, create_time: "t2" }], next_page_token: "b", extra: true };
    expect(diffJson(a, b, ["**.create_time", "next_page_token", "products.*.id"])).toEqual([
      { path: "extra", legacy: undefined, new: true },
      { path: "products[0].on_hand", legacy: 7, new: 9 },
    ]);
    expect(diffJson([1, 2], [1], [])).toEqual([{ path: "[1]", legacy: 2, new: undefined }]);
    expect(ignored(["a", "b", "create_time"], ["**.create_time"])).toBe(true);
    expect(ignored(["create_time"], ["**.create_time"])).toBe(true);
    expect(ignored(["a", "id"], ["*.id"])).toBe(true);
    expect(ignored(["a", "b", "id"], ["*.id"])).toBe(false);
  });
});

describe("cutover", () => {
  it("sends 0 to legacy and 100 to the new side, and is stable per user", () => {
    expect(sideOf("R", "u", 0)).toBe("legacy");
    expect(sideOf("R", "u", 100)).toBe("new");
    for (let i = 0; i < 50; i++) expect(sideOf("R", `u${i}`, 40)).toBe(sideOf("R", `u${i}`, 40));
    // raising the weight never moves a user back to legacy
    for (let i = 0; i < 200; i++)
      if (sideOf("R", `u${i}`, 30) === "new") expect(sideOf("R", `u${i}`, 60)).toBe("new");
  });

  it("parses STRANGLER_ROUTES and names what is wrong", () => {
    expect(parseRouteSettings("ListProducts=0,shadow; GetProduct=25")).toEqual(
      new Map([
        ["ListProducts", { weight: 0, shadow: true }],
        ["GetProduct", { weight: 25, shadow: false }],
      ]),
    );
    expect(() => parseRouteSettings("GetProduct=101")).toThrow(/0 to 100/);
    expect(() => parseRouteSettings("GetProduct")).toThrow(/expected/);
    expect(() => parseRouteSettings("A=1;A=2")).toThrow(/twice/);
  });
});
