import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { create, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { meshworkFiles } from "@meshwork/contracts";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "@meshwork/contracts/grpc/health/v1/health";
import {
  ServerReflection,
  ServerReflectionRequestSchema,
} from "@meshwork/contracts/grpc/reflection/v1/reflection";
import {
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflection as ServerReflectionV1alpha,
} from "@meshwork/contracts/grpc/reflection/v1alpha/reflection";
import {
  file_meshwork_inventory_v1_inventory,
  InventoryService,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { createService, type Service } from "@meshwork/runtime";
import { testRuntimeConfig } from "@meshwork/runtime/testing";
import { createLogger } from "@meshwork/telemetry";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "./config.js";
import { createGateway, type Gateway } from "./gateway.js";

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const PRODUCT_ID = "0f5b8d2c-6a1e-4c3b-9d7f-2e8a1b4c6d90";

/** The gateway as deployed (its config from the environment), in front of one upstream. */
const gatewayConfig = (upstream: string, env: Record<string, string> = {}) =>
  loadConfig({
    PORT: "0",
    ADMIN_PORT: "0",
    LOG_LEVEL: "silent",
    DISCOVERY: "static",
    UPSTREAMS: `inventory=${upstream}`,
    ...env,
  });

const listServices = () =>
  create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });

/** The answers of one reflection stream, or the error it ended with. */
async function reflect(baseUrl: string, ...requests: ReturnType<typeof listServices>[]) {
  const client = createClient(ServerReflection, createGrpcTransport({ baseUrl }));
  const answers = [];
  try {
    for await (const res of client.serverReflectionInfo(
      (async function* () {
        yield* requests;
      })(),
      { timeoutMs: 5_000 },
    )) {
      answers.push(res);
    }
    return { answers };
  } catch (err) {
    return { answers, error: ConnectError.from(err) };
  }
}

async function* once<T>(request: T) {
  yield request;
}

describe("server reflection through the gateway (grpcurl list works at the edge)", () => {
  let upstream: Service;
  let gateway: Gateway;
  let closed: Gateway;
  let limited: Gateway;
  let url: string;
  let closedUrl: string;
  let limitedUrl: string;
  let upstreamUrl: string;

  beforeAll(async () => {
    // The only upstream: inventory, with one product; it serves no reflection of the others.
    upstream = createService({
      name: "inventory",
      config: testRuntimeConfig(),
      files: [file_meshwork_inventory_v1_inventory],
      services: [InventoryService],
      routes(router) {
        router.service(InventoryService, {
          listProducts: () => ({
            products: [{ id: PRODUCT_ID, sku: "MUG-1", name: "Mug", onHand: 3n, available: 3n }],
          }),
        });
      },
    });
    ({ url: upstreamUrl } = await upstream.start());
    const logger = createLogger({ service: "gateway", level: "silent" });
    gateway = createGateway({ config: gatewayConfig(upstreamUrl), logger });
    closed = createGateway({ config: gatewayConfig(upstreamUrl, { REFLECTION: "false" }), logger });
    limited = createGateway({
      config: gatewayConfig(upstreamUrl, { RATE_LIMITS: "*=2/1m:2", MAX_REQUEST_BYTES: "512" }),
      logger,
    });
    ({ url } = await gateway.start());
    ({ url: closedUrl } = await closed.start());
    ({ url: limitedUrl } = await limited.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await closed?.stop();
    await limited?.stop();
    await upstream?.shutdown();
  });

  it("lists every routed service and describes each with its dependencies, v1 and v1alpha, with no token", async () => {
    const client = createClient(ServerReflection, createGrpcTransport({ baseUrl: url }));
    const answers = [];
    for await (const res of client.serverReflectionInfo(
      (async function* () {
        yield create(ServerReflectionRequestSchema, { messageRequest: { case: "listServices", value: "" } });
        yield create(ServerReflectionRequestSchema, {
          messageRequest: { case: "fileContainingSymbol", value: "meshwork.orders.v1.OrderService" },
        });
      })(),
      { timeoutMs: 5_000 },
    )) {
      answers.push(res);
    }
    const [list, file] = answers;
    expect(list?.messageResponse.case).toBe("listServicesResponse");
    const listed =
      list?.messageResponse.case === "listServicesResponse"
        ? list.messageResponse.value.service.map((s) => s.name)
        : [];
    const routed = meshworkFiles.flatMap((f) => f.services.map((s) => s.typeName));
    expect(routed.length).toBeGreaterThanOrEqual(5);
    expect(listed).toEqual(expect.arrayContaining([...routed, "grpc.reflection.v1.ServerReflection"]));
    expect(file?.messageResponse.case).toBe("fileDescriptorResponse");
    const protos =
      file?.messageResponse.case === "fileDescriptorResponse"
        ? file.messageResponse.value.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b))
        : [];
    expect(protos[0]?.name).toBe("meshwork/orders/v1/orders.proto");
    expect(protos.map((p) => p.name)).toContain("meshwork/common/v1/money.proto");

    const alpha = createClient(ServerReflectionV1alpha, createGrpcTransport({ baseUrl: url }));
    const alphaAnswers = [];
    for await (const res of alpha.serverReflectionInfo(
      once(create(AlphaRequestSchema, { messageRequest: { case: "listServices", value: "" } })),
      { timeoutMs: 5_000 },
    )) {
      alphaAnswers.push(res.messageResponse.case);
    }
    expect(alphaAnswers).toEqual(["listServicesResponse"]);
  });

  it("lets buf curl list the mesh's methods and call one through the gateway from reflection alone", {
    timeout: 90_000,
  }, async () => {
    const bufCurl = (args: string[]) =>
      promisify(execFile)("npx", ["buf", "curl", "--protocol", "grpc", "--http2-prior-knowledge", ...args], {
        cwd: repoRoot,
        timeout: 40_000,
      });
    const { stdout: methods } = await bufCurl(["--list-methods", url]);
    expect(methods.trim().split("\n")).toEqual(
      expect.arrayContaining([
        "meshwork.orders.v1.OrderService/PlaceOrder",
        "meshwork.users.v1.UserService/Login",
        "meshwork.inventory.v1.InventoryService/ListProducts",
      ]),
    );
    // The schema comes from the gateway's reflection; the call goes on to the inventory upstream.
    const { stdout } = await bufCurl([
      "-d",
      "{}",
      `${url}/meshwork.inventory.v1.InventoryService/ListProducts`,
    ]);
    expect(JSON.parse(stdout)).toMatchObject({ products: [{ id: PRODUCT_ID, sku: "MUG-1", name: "Mug" }] });
  });

  it("answers UNIMPLEMENTED for reflection when it is turned off (REFLECTION=false), as Envoy does", async () => {
    const { error } = await reflect(closedUrl, listServices());
    expect(error?.code).toBe(Code.Unimplemented);
  });

  it("keeps the edge's request size limit and rate limits for reflection, which needs no token", async () => {
    // Over MAX_REQUEST_BYTES: refused before it is read whole.
    const huge = create(ServerReflectionRequestSchema, {
      messageRequest: { case: "fileContainingSymbol", value: "x".repeat(4_096) },
    });
    const tooBig = await reflect(limitedUrl, huge);
    expect(tooBig.error?.code).toBe(Code.ResourceExhausted);
    // Two calls pass the `*=2/1m:2` bucket of this client (the refused one above took a token
    // only if it got that far); past it, RESOURCE_EXHAUSTED with retry-after.
    const outcomes = [];
    for (let i = 0; i < 3; i++) outcomes.push(await reflect(limitedUrl, listServices()));
    const refused = outcomes.find((o) => o.error);
    expect(refused?.error?.code).toBe(Code.ResourceExhausted);
    expect(refused?.error?.message).toContain("rate limit *=2/1m:2 exceeded");
    expect(Number(refused?.error?.metadata.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(outcomes[0]?.answers.map((a) => a.messageResponse.case)).toEqual(["listServicesResponse"]);
  });

  it("answers grpc.health.v1.Health for itself: SERVING until it stops, then NOT_SERVING and the watch ends", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: limitedUrl }));
    // Not rate limited (this gateway allows 2 calls a minute per client): a prober may ask often.
    for (let i = 0; i < 4; i++) expect((await health.check({ service: "" })).status).toBe(Status.SERVING);
    const unknown = await health.check({ service: "meshwork.users.v1.UserService" }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(unknown?.code).toBe(Code.NotFound);

    const own = createGateway({
      config: gatewayConfig(upstreamUrl),
      logger: createLogger({ service: "gateway", level: "silent" }),
    });
    const { url: ownUrl } = await own.start();
    const watcher = createClient(Health, createGrpcTransport({ baseUrl: ownUrl }));
    const seen: Status[] = [];
    let stopping: Promise<void> | undefined;
    for await (const res of watcher.watch({ service: "" }, { timeoutMs: 10_000 })) {
      seen.push(res.status);
      stopping ??= own.stop(); // once the watch has reported SERVING
    }
    await stopping;
    expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);
  });
});
