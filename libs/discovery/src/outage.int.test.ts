import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createClient } from "@connectrpc/connect";
import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger, createTelemetry } from "@meshwork/telemetry";
import {
  captureLogs,
  type ManagedProcess,
  startNatsServer,
  startProcess,
  type TestNatsServer,
  uniqueName,
  waitFor,
} from "@meshwork/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DiscoveryConfig } from "./config.js";
import { createDiscovery, type Discovery } from "./discovery.js";

const ID = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const UNREACHABLE = "discovery registry unreachable; calls keep using the last known endpoints";
const BACK = "discovery registry reachable again; endpoints resynced";

describe("a registry outage is not an outage of the mesh (own nats-server, stopped and restarted)", () => {
  let nats: TestNatsServer;
  let config: DiscoveryConfig;
  const services: Service[] = [];
  const discoveries: Discovery[] = [];
  const children: ManagedProcess[] = [];
  let metricsServer: Server | undefined;
  beforeAll(async () => {
    nats = await startNatsServer();
    config = {
      natsUrl: nats.url,
      mode: "registry",
      bucket: uniqueName("reg").replace(/[^A-Za-z0-9_-]/g, "_"),
      ttlMs: 2_000,
      advertiseHost: undefined,
      upstreams: {},
    };
  });
  afterAll(async () => {
    for (const c of children) await c.stop("SIGKILL");
    for (const s of services) await s.shutdown();
    for (const d of discoveries) await d.close();
    metricsServer?.close();
    await nats.remove(); // the bucket goes with the server's store
  });

  /** Another process serving users, announced in the registry: killed with SIGKILL later. */
  const startChild = async (name: string) => {
    const child = startProcess(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { file_meshwork_users_v1_users, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
         import { createDiscovery } from "@meshwork/discovery";
         import { createService } from "@meshwork/runtime";
         import { testRuntimeConfig } from "@meshwork/runtime/testing";
         const discovery = createDiscovery(${JSON.stringify(config)}, { service: "users" });
         const service = createService({
           name: ${JSON.stringify(name)}, config: testRuntimeConfig(), files: [file_meshwork_users_v1_users],
           services: [UserService], announce: (where) => discovery.announce(where),
           routes(router) {
             router.service(UserService, { getUser: async (req) => ({ user: { id: req.id, displayName: ${JSON.stringify(name)} } }) });
           },
         });
         const { port } = await service.start();
         console.log("started " + port);`,
      ],
      { cwd: fileURLToPath(new URL("..", import.meta.url)) },
    );
    children.push(child);
    const line = await child.waitForLine((l) => l.startsWith("started "), 30_000);
    return { proc: child, url: `http://127.0.0.1:${line.split(" ")[1]}` };
  };

  it("keeps calling the last known endpoints through the outage, drops a killed one by health, resyncs after", async () => {
    // "a" in this process, "b" in a child process.
    const discoveryA = createDiscovery(config, { service: "users" });
    discoveries.push(discoveryA);
    const a = createService({
      name: "a",
      config: testRuntimeConfig(),
      files: [file_meshwork_users_v1_users],
      services: [UserService],
      announce: (where) => discoveryA.announce(where),
      routes(router) {
        router.service(UserService, { getUser: async (req) => ({ user: { id: req.id, displayName: "a" } }) });
      },
    });
    services.push(a);
    const urlA = `http://127.0.0.1:${(await a.start()).port}`;
    const b = await startChild("b");

    // The caller, with its log lines and its metrics readable.
    const logs = captureLogs();
    const telemetry = createTelemetry({ serviceName: "caller" });
    metricsServer = createServer((req, res) => telemetry.metricsHandler(req, res));
    await new Promise<void>((r) => metricsServer?.listen(0, "127.0.0.1", r));
    const metricsUrl = `http://127.0.0.1:${(metricsServer.address() as AddressInfo).port}/metrics`;
    const registryUpMetric = async () => {
      const text = await (await fetch(metricsUrl)).text();
      return text.split("\n").find((l) => l.startsWith("discovery_registry_up{"));
    };
    const caller = createDiscovery(
      config,
      { service: "caller" },
      {
        logger: createLogger({ service: "caller", destination: logs.destination }),
        meter: telemetry.meter,
      },
    );
    discoveries.push(caller);
    const endpoints = await caller.endpoints();
    await waitFor(() => endpoints.healthy("users").length === 2, { what: "both instances healthy" });
    const client = createClient(UserService, await caller.transport("users"));
    const call = async () => (await client.getUser({ id: ID })).user?.displayName;
    expect(await registryUpMetric()).toMatch(/ 1$/);

    // NATS goes away for three TTLs: every record would have expired twice over.
    const stoppedAt = Date.now();
    await nats.stop();
    await waitFor(() => !caller.registryUp(), { what: "the caller to notice the outage" });
    expect(await registryUpMetric()).toMatch(/ 0$/);
    const seen = new Set<string>();
    while (Date.now() - stoppedAt < config.ttlMs * 2) seen.add((await call()) ?? "?");
    expect([...seen].sort()).toEqual(["a", "b"]);
    expect(endpoints.healthy("users")).toHaveLength(2);

    // An instance killed during the outage leaves the healthy set by its broken health stream
    // (the registry cannot tell anyone), and calls keep succeeding on the other.
    await b.proc.stop("SIGKILL");
    await waitFor(() => endpoints.healthy("users").length === 1, { what: "b out of the healthy set" });
    expect(endpoints.healthy("users")[0]?.url).toBe(urlA);
    while (Date.now() - stoppedAt < config.ttlMs * 3) expect(await call()).toBe("a");
    expect(endpoints.all("users")).toHaveLength(2); // still known, only its health says no
    expect(logs.lines.filter((l) => l.msg === UNREACHABLE)).toHaveLength(1);
    expect(logs.lines.find((l) => l.msg === UNREACHABLE)).toMatchObject({
      level: "warn",
      bucket: config.bucket,
    });

    // NATS is back: the registry is read afresh. "a" heartbeats again and stays; "b", which
    // nobody deregistered, is gone within a TTL.
    await nats.start();
    await waitFor(() => caller.registryUp(), { what: "the caller to resync", timeoutMs: 20_000 });
    await waitFor(() => endpoints.all("users").length === 1, { what: "b gone after the resync" });
    expect(endpoints.all("users")[0]).toMatchObject({ url: urlA, source: "registry", health: "SERVING" });
    expect(await call()).toBe("a");
    expect(await registryUpMetric()).toMatch(/ 1$/);
    expect(logs.lines.filter((l) => l.msg === BACK)).toHaveLength(1);
    expect(logs.lines.filter((l) => l.msg === UNREACHABLE)).toHaveLength(1);

    // And it follows the registry again: a new instance appears, and one killed expires by TTL.
    const c = await startChild("c");
    await waitFor(() => endpoints.healthy("users").length === 2, { what: "c after the resync" });
    expect(endpoints.all("users").map((e) => e.url)).toContain(c.url);
    await c.proc.stop("SIGKILL");
    await waitFor(() => endpoints.all("users").length === 1, { what: "c expired", timeoutMs: 10_000 });
  });
});
