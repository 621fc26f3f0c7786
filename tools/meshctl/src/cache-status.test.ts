import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, expect, it } from "vitest";
import { cacheFigures, cacheRows, fetchCacheRows } from "./cache-status.js";

const page = `# HELP cache_requests_total Cache look-ups
# TYPE cache_requests_total counter
cache_requests_total{cache="products",tier="l1",result="hit"} 90
cache_requests_total{cache="products",tier="l1",result="miss"} 10
cache_requests_total{cache="products",tier="l2",result="hit"} 6
cache_requests_total{cache="products",tier="l2",result="miss"} 4
cache_load_duration_milliseconds_count{cache="products"} 4
cache_load_duration_milliseconds_sum{cache="products"} 10
cache_load_duration_milliseconds_bucket{cache="products",le="5"} 3
cache_evictions_total{cache="products",tier="l1",reason="evict"} 2
cache_evictions_total{cache="products",tier="l1",reason="expire"} 1
cache_shared_up{cache="products",adapter="nats-kv"} 0
rpc_server_duration_count{rpc_method="GetProduct"} 100
`;

describe("meshctl status: the caches of a service from its /metrics", () => {
  it("reads hits and misses per tier, loads and their mean time, evictions and the shared tier's state", () => {
    const [f] = cacheFigures(page);
    expect(f).toEqual({
      cache: "products",
      l1: { hits: 90, misses: 10 },
      l2: { hits: 6, misses: 4 },
      loads: 4,
      loadMsSum: 10,
      evictions: 3,
      sharedUp: 0,
    });
    expect(cacheRows("inventory", cacheFigures(page))).toEqual([
      ["inventory", "products", "90.0% (90/100)", "60.0% (6/10)", "4", "2.5 ms", "3", "DOWN"],
    ]);
    expect(cacheFigures("up 1\n")).toEqual([]);
  });

  it("reads the gateway's JWKS cache from its admin page", async () => {
    const jwks = page.replaceAll('cache="products"', 'cache="jwks"');
    const server = createServer((req, res) =>
      req.url === "/stats/prometheus" ? res.end(jwks) : res.writeHead(404).end(),
    );
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      expect(await fetchCacheRows("gateway", address, "/stats/prometheus")).toEqual([
        ["gateway", "jwks", "90.0% (90/100)", "60.0% (6/10)", "4", "2.5 ms", "3", "DOWN"],
      ]);
      expect(await fetchCacheRows("gateway", address)).toEqual([]);
    } finally {
      server.close();
    }
  });
});
