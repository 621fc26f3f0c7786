import type { ServiceSpec } from "./names.js";

/**
 * The files of a new service, in the house layout (see apps/inventory): relative path -> text.
 * Everything is generated from the spec; nothing here needs a hand edit to build, test and serve.
 */
export interface TemplateContext extends ServiceSpec {
  /** Current versions of the workspace packages the service depends on (`@meshwork/db` -> 0.1.0). */
  versions: Record<string, string>;
  /** Dependency ranges the other services use, so the lockfile needs nothing new. */
  ranges: Record<string, string>;
}

const proto = (s: ServiceSpec) => `meshwork.${s.name}.v1`;
const contract = (s: ServiceSpec, file: string) => `@meshwork/contracts/meshwork/${s.name}/v1/${file}`;
const fileSymbol = (service: string, file: string) => `file_meshwork_${service}_v1_${file}`;

export function protoFiles(s: ServiceSpec): Record<string, string> {
  const files: Record<string, string> = {};
  files[`proto/meshwork/${s.name}/v1/${s.name}.proto`] = `syntax = "proto3";

package ${proto(s)};

import "buf/validate/validate.proto";
import "google/protobuf/timestamp.proto";
import "meshwork/api/v1/access.proto";

// ${s.pascal}Service keeps items, each owned by the user who created it.
// (Written by \`meshctl new service ${s.name}\`: rename the item and add fields; every method keeps
// an access policy, or the gateway refuses it.)
service ${s.pascal}Service {
  // CreateItem adds an item owned by the caller. Idempotent by request_id: a retry with the same
  // request_id returns the item the first call created, so the gateway may retry it.
  rpc CreateItem(CreateItemRequest) returns (CreateItemResponse) {
    option idempotency_level = IDEMPOTENT;
    option (meshwork.api.v1.access) = {level: LEVEL_AUTHENTICATED};
  }
  // GetItem returns one item to its owner (or an admin).
  rpc GetItem(GetItemRequest) returns (GetItemResponse) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (meshwork.api.v1.access) = {level: LEVEL_AUTHENTICATED};
  }
  // ListItems pages through every item in creation order; anyone may read the list.
  rpc ListItems(ListItemsRequest) returns (ListItemsResponse) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (meshwork.api.v1.access) = {level: LEVEL_PUBLIC};
  }
}

message Item {
  string id = 1;
  string owner_id = 2;
  string name = 3;
  google.protobuf.Timestamp create_time = 4;
}

message CreateItemRequest {
  // Chosen by the client, once per item: the idempotency key.
  string request_id = 1 [(buf.validate.field).string.uuid = true];
  string name = 2 [(buf.validate.field).string = {
    min_len: 1
    max_len: 200
  }];
}

message CreateItemResponse {
  Item item = 1;
}

message GetItemRequest {
  string id = 1 [(buf.validate.field).string.uuid = true];
}

message GetItemResponse {
  Item item = 1;
}

message ListItemsRequest {
  // Maximum number to return; 0 means the default (20). Values above 100 are coerced to 100.
  int32 page_size = 1 [(buf.validate.field).int32.gte = 0];
  // The next_page_token of a previous response, or empty for the first page.
  string page_token = 2 [(buf.validate.field).string.max_len = 512];
}

message ListItemsResponse {
  repeated Item items = 1;
  // Empty on the last page.
  string next_page_token = 2;
}
`;
  if (s.publishesEvents) {
    files[`proto/meshwork/${s.name}/v1/events.proto`] = `syntax = "proto3";

package ${proto(s)};

import "google/protobuf/timestamp.proto";

// ItemCreated is published (through the ${s.name} outbox, on the ${s.name.toUpperCase()} stream) once
// per item, in the transaction that created it.
message ItemCreated {
  string item_id = 1;
  string owner_id = 2;
  string name = 3;
  google.protobuf.Timestamp create_time = 4;
}
`;
  }
  return files;
}

export function appFiles(c: TemplateContext): Record<string, string> {
  const s = c;
  const events = s.publishesEvents || s.consumes.length > 0;
  const dir = `apps/${s.name}`;
  const files: Record<string, string> = {};
  const deps: Record<string, string> = {
    "@bufbuild/protobuf": c.ranges["@bufbuild/protobuf"] ?? "^2.17.0",
    "@connectrpc/connect": c.ranges["@connectrpc/connect"] ?? "2.1.2",
    "@meshwork/contracts": c.versions["@meshwork/contracts"] ?? "0.1.0",
    "@meshwork/db": c.versions["@meshwork/db"] ?? "0.1.0",
    "@meshwork/discovery": c.versions["@meshwork/discovery"] ?? "0.1.0",
    ...(events ? { "@meshwork/events": c.versions["@meshwork/events"] ?? "0.1.0" } : {}),
    "@meshwork/runtime": c.versions["@meshwork/runtime"] ?? "0.1.0",
    "@meshwork/telemetry": c.versions["@meshwork/telemetry"] ?? "0.1.0",
    ...(events ? { "@nats-io/jetstream": c.ranges["@nats-io/jetstream"] ?? "^3.4.0" } : {}),
    ...(events ? { "@nats-io/transport-node": c.ranges["@nats-io/transport-node"] ?? "^3.4.0" } : {}),
    "drizzle-orm": c.ranges["drizzle-orm"] ?? "^0.45.4",
    uuid: c.ranges.uuid ?? "^14.0.3",
    zod: c.ranges.zod ?? "^4.6.7",
  };
  const devDeps: Record<string, string> = {
    "@connectrpc/connect-node": c.ranges["@connectrpc/connect-node"] ?? "^2.1.2",
    "@meshwork/bundle": c.versions["@meshwork/bundle"] ?? "0.1.0",
    "@meshwork/testing": c.versions["@meshwork/testing"] ?? "0.1.0",
    "drizzle-kit": c.ranges["drizzle-kit"] ?? "^0.31.11",
    postgres: c.ranges.postgres ?? "^3.4.9",
  };
  const sorted = (o: Record<string, string>) =>
    Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
  files[`${dir}/package.json`] = `${JSON.stringify(
    {
      name: `@meshwork/${s.name}`,
      version: "0.1.0",
      private: true,
      description: `${proto(s)}.${s.pascal}Service (written by meshctl new service)`,
      type: "module",
      main: "./dist/main.js",
      meshwork: {
        service: s.name,
        port: s.port,
        main: "dist/main.js",
        database: true,
        ...(s.consumes.length > 0 ? { consumes: s.consumes } : {}),
      },
      scripts: {
        // The bundle is what `meshctl up` starts (tools/bundle): half the start-up CPU.
        build: "tsc -p tsconfig.build.json && meshwork-bundle",
        typecheck: "tsc --noEmit",
        lint: "biome check --error-on-warnings .",
        test: "vitest run",
        dev: "tsx watch src/main.ts",
        start: "node dist/main.js",
        "db:generate": "drizzle-kit generate",
      },
      dependencies: sorted(deps),
      devDependencies: sorted(devDeps),
    },
    null,
    2,
  )}\n`;
  files[`${dir}/tsconfig.json`] = `{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "noEmit": true },
  "include": ["src", "test", "*.ts"]
}
`;
  files[`${dir}/tsconfig.build.json`] = `{
  "extends": "../../tsconfig.base.json",
  "compilerOptions": { "rootDir": "src", "outDir": "dist", "noEmit": false },
  "include": ["src"],
  "exclude": ["src/**/*.test.ts"]
}
`;
  files[`${dir}/vitest.config.ts`] = `export { default } from "../../vitest.shared.js";\n`;
  files[`${dir}/drizzle.config.ts`] = `import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/adapters/db/schema.ts",
  out: "./drizzle",
});
`;
  files[`${dir}/src/main.ts`] = `import { runService } from "@meshwork/runtime";
import { loadConfig } from "./config.js";
import { create${s.pascal}Service } from "./server.js";

await runService(await create${s.pascal}Service(loadConfig()));
`;
  files[`${dir}/src/config.ts`] = configTs(s, events);
  files[`${dir}/src/server.ts`] = serverTs(s);
  files[`${dir}/src/domain/item.ts`] = domainTs(s);
  files[`${dir}/src/domain/item.test.ts`] = domainTestTs();
  files[`${dir}/src/app/commands/create-item.ts`] = `import { v7 as uuidv7 } from "uuid";
import { type Item, itemName } from "../../domain/item.js";
import type { ItemRepository } from "../../domain/ports.js";

export interface CreateItemInput {
  ownerId: string;
  requestId: string;
  name: string;
}

/** Adds an item for its owner; the same request id of the same owner returns the first item. */
export function createItem(deps: { items: ItemRepository }, input: CreateItemInput): Promise<Item> {
  return deps.items.create({
    id: uuidv7(),
    ownerId: input.ownerId,
    requestId: input.requestId,
    name: itemName(input.name),
  });
}
`;
  files[`${dir}/src/app/queries/get-item.ts`] =
    `import { assertMayRead, type Item, type Reader } from "../../domain/item.js";
import type { ItemRepository } from "../../domain/ports.js";

/** One item, to its owner or an admin (ItemNotFoundError, ItemAccessDeniedError). */
export async function getItem(deps: { items: ItemRepository }, reader: Reader, id: string): Promise<Item> {
  const item = await deps.items.get(id);
  assertMayRead(reader, item);
  return item;
}
`;
  files[`${dir}/src/app/queries/list-items.ts`] = `import { keysetTokens, pageSize } from "@meshwork/db";
import type { Item } from "../../domain/item.js";
import type { ItemRepository } from "../../domain/ports.js";

export interface ListItemsInput {
  /** 0 means the default; larger than the maximum is coerced to it. */
  pageSize: number;
  pageToken: string;
}

const pages = keysetTokens("i1:", "ListItems");

/** Pages through the items in creation order (ids are UUIDv7) with an opaque keyset token. */
export async function listItems(
  deps: { items: ItemRepository },
  input: ListItemsInput,
): Promise<{ items: Item[]; nextPageToken: string }> {
  const size = pageSize(input.pageSize);
  const rows = await deps.items.listAfter(input.pageToken ? pages.decode(input.pageToken) : undefined, size + 1);
  return pages.page(rows, size);
}
`;
  files[`${dir}/src/domain/ports.ts`] = `import type { Item, NewItem } from "./item.js";

/** Where items are kept (adapters/db implements it). */
export interface ItemRepository {
  /** Inserts the item, or returns the one its owner already created with that request id. */
  create(item: NewItem): Promise<Item>;
  /** ItemNotFoundError when there is none. */
  get(id: string): Promise<Item>;
  listAfter(afterId: string | undefined, limit: number): Promise<Item[]>;
}
`;
  files[`${dir}/src/adapters/db/schema.ts`] = schemaTs(s);
  files[`${dir}/src/adapters/db/item-store.ts`] = storeTs(s);
  files[`${dir}/src/ports/rpc/${s.name}-service.ts`] = rpcTs(s);
  if (s.consumes.length > 0) {
    files[`${dir}/src/app/commands/record-received-event.ts`] =
      `import type { ReceivedEvent } from "../../domain/received-event.js";
import type { ReceivedEventRepository } from "../../domain/ports-events.js";

/**
 * Records an event of another service. Runs inside the transaction that also writes the event's
 * inbox row, so a redelivered event changes nothing (exactly-once effect).
 */
export function recordReceivedEvent(
  deps: { received: ReceivedEventRepository },
  event: ReceivedEvent,
): Promise<void> {
  return deps.received.insert(event);
}
`;
    files[`${dir}/src/domain/received-event.ts`] = `/** An event of another service this one has applied. */
export interface ReceivedEvent {
  eventId: string;
  type: string;
  source: string;
  time: Date;
}
`;
    files[`${dir}/src/domain/ports-events.ts`] = `import type { ReceivedEvent } from "./received-event.js";

export interface ReceivedEventRepository {
  insert(event: ReceivedEvent): Promise<void>;
}
`;
    files[`${dir}/src/ports/events/on-event.ts`] = `import type { AnyTransaction } from "@meshwork/db";
import type { EventHandler } from "@meshwork/events";
import { receivedEventRepository } from "../../adapters/db/received-events.js";
import { recordReceivedEvent } from "../../app/commands/record-received-event.js";

/** Any event of a consumed stream -> a received_events row, in the inbox's transaction. */
export const onEvent: EventHandler = async (_message, tx: AnyTransaction, event) => {
  await recordReceivedEvent(
    { received: receivedEventRepository(tx) },
    { eventId: event.id, type: event.type, source: event.source, time: event.time },
  );
};
`;
    files[`${dir}/src/adapters/db/received-events.ts`] = `import type { Queryable } from "@meshwork/db";
import type { ReceivedEventRepository } from "../../domain/ports-events.js";
import { receivedEvents } from "./schema.js";

export function receivedEventRepository(db: Queryable): ReceivedEventRepository {
  return {
    async insert(e) {
      await db.insert(receivedEvents).values(e).onConflictDoNothing();
    },
  };
}
`;
  }
  files[`${dir}/src/${s.name}.int.test.ts`] = intTestTs(s);
  return files;
}

function configTs(s: ServiceSpec, events: boolean): string {
  return `import { type DatabaseConfig, databaseEnvShape, toDatabaseConfig } from "@meshwork/db";
import { type DiscoveryConfig, discoveryEnvShape, toDiscoveryConfig } from "@meshwork/discovery";
${events ? `import {\n  type EventsConfig,\n  eventsEnvShape,\n  refuseDefaultNamespaceUnderTest,\n  toEventsConfig,\n} from "@meshwork/events";\n` : ""}import { parseEnv, type RuntimeConfig, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";

const shape = {
  ...runtimeEnvShape({ port: ${s.port} }),
  ...databaseEnvShape({ dataDir: ".meshwork/data/${s.name}" }),
${events ? "  ...eventsEnvShape(),\n" : ""}  ...discoveryEnvShape(),
};

export interface Config {
  runtime: RuntimeConfig;
  db: DatabaseConfig;
${events ? "  events: EventsConfig;\n" : ""}  discovery: DiscoveryConfig;
}

/** Reads the ${s.name} service's configuration from the environment, once. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
${events ? `  refuseDefaultNamespaceUnderTest(env, "${s.name}");\n` : ""}  const e = parseEnv(shape, env);
  return {
    runtime: toRuntimeConfig(e),
    db: toDatabaseConfig(e),
${events ? "    events: toEventsConfig(e),\n" : ""}    discovery: toDiscoveryConfig(e),
  };
}
`;
}

function serverTs(s: ServiceSpec): string {
  const events = s.publishesEvents || s.consumes.length > 0;
  const lines: string[] = [];
  lines.push(`import { fileURLToPath } from "node:url";`);
  if (s.consumes.length) lines.push(`import { createRegistry } from "@bufbuild/protobuf";`);
  lines.push(`import { ${fileSymbol(s.name, s.name)}, ${s.pascal}Service } from "${contract(s, s.name)}";`);
  for (const source of s.consumes) {
    lines.push(
      `import { ${fileSymbol(source, "events")} } from "@meshwork/contracts/meshwork/${source}/v1/events";`,
    );
  }
  lines.push(`import { databaseServiceOptions, observeDatabasePool, openDatabase } from "@meshwork/db";`);
  lines.push(`import { createDiscovery } from "@meshwork/discovery";`);
  if (events) {
    const names = [
      ...(s.consumes.length ? ["connectNats", "createForeignConsumer", "type EventConsumer"] : []),
      ...(s.publishesEvents ? ["type OutboxPublisher", "startOutboxPublisher"] : []),
      "type StreamSpec",
      "streamName",
    ];
    const filtered = names;
    lines.push(
      `import { ${filtered.sort((a, b) => a.replace("type ", "").localeCompare(b.replace("type ", ""))).join(", ")} } from "@meshwork/events";`,
    );
  }
  lines.push(`import { createService, packageVersion, type Service } from "@meshwork/runtime";`);
  lines.push(`import { createLogger, type Logger, type Telemetry } from "@meshwork/telemetry";`);
  if (s.consumes.length) lines.push(`import type { NatsConnection } from "@nats-io/transport-node";`);
  lines.push(`import { createItemStore } from "./adapters/db/item-store.js";`);
  lines.push(
    `import { ${[...(s.consumes.length ? ["inbox"] : []), ...(s.publishesEvents ? ["outbox"] : []), "schema"].join(", ")} } from "./adapters/db/schema.js";`,
  );
  lines.push(`import type { Config } from "./config.js";`);
  lines.push(`import type { ItemRepository } from "./domain/ports.js";`);
  if (s.consumes.length) lines.push(`import { onEvent } from "./ports/events/on-event.js";`);
  lines.push(`import { create${s.pascal}ServiceHandlers } from "./ports/rpc/${s.name}-service.js";`);
  const imports = lines.join("\n");

  const streams = events
    ? `
/** A service's events stream: every subject of its package, \`meshwork.<service>.>\`. */
const streamOf = (namespace: string, service: string): StreamSpec => ({
  name: streamName(namespace, service.toUpperCase()),
  subjects: [\`\${namespace}meshwork.\${service}.>\`],
});
`
    : "";
  const consumed = s.consumes.length
    ? `
/** The event files of the services this one consumes; every message type in them is handled. */
const CONSUMED = {
${s.consumes.map((c) => `  ${c}: ${fileSymbol(c, "events")},`).join("\n")}
};
`
    : "";
  const consumeSetup = s.consumes.length
    ? `      nc = await connectNats(config.events.natsUrl, SERVICE, config.events.natsCredentials);
      const host = {
        service: SERVICE,
        config: config.events,
        nc,
        database,
        inbox,
        logger,
        telemetry: service.telemetry,
      };
      // Each stream belongs to the service that publishes it: its consumer waits for it to exist
      // and never declares it (this service's NATS user may not).
      consumers = Object.entries(CONSUMED).map(([source, file]) =>
        createForeignConsumer(host, {
          stream: streamOf(ns, source),
          durable: SERVICE,
          registry: createRegistry(file),
          handlers: Object.fromEntries(file.messages.map((m) => [m.typeName, onEvent])),
        }),
      );
      for (const c of consumers) await c.start();
`
    : "";
  const publishSetup = s.publishesEvents
    ? `      publisher = await startOutboxPublisher({
        service: SERVICE,
        config: config.events,
        stream: streamOf(ns, SERVICE),
        database,
        table: outbox,
        logger,
        tracer: service.telemetry.tracer,
        meter: service.telemetry.meter,
      });
`
    : "";
  const what = [
    "its database (migrated before it reports SERVING)",
    `the ${s.pascal}Service handlers`,
    ...(s.publishesEvents
      ? [`the relay that publishes its outbox to the ${s.name.toUpperCase()} stream`]
      : []),
    ...(s.consumes.length
      ? [
          `durable consumers on ${s.consumes.map((c) => c.toUpperCase()).join(", ")} (inbox: exactly-once effect)`,
        ]
      : []),
    "its entry in the discovery registry",
  ];
  return `${imports}

const migrationsFolder = fileURLToPath(new URL("../drizzle", import.meta.url));
const VERSION = packageVersion(import.meta.url);
const SERVICE = "${s.name}";
${streams}${consumed}
/**
 * Wires the ${s.name} service: ${what.join(", ")}.
 */
export async function create${s.pascal}Service(
  config: Config,
  observe: { logger?: Logger; telemetry?: Telemetry } = {},
): Promise<Service> {
  const database = await openDatabase(config.db, schema);
  const store = createItemStore(database.db${s.publishesEvents ? ", config.events.namespace" : ""});
  const discovery = createDiscovery(config.discovery, { service: SERVICE, version: VERSION });
  const logger = observe.logger ?? createLogger({ service: SERVICE, level: config.runtime.logLevel });
${events ? "  const ns = config.events.namespace;\n" : ""}${s.consumes.length ? "  let nc: NatsConnection | undefined;\n  let consumers: EventConsumer[] = [];\n" : ""}${s.publishesEvents ? "  let publisher: OutboxPublisher | undefined;\n" : ""}  let migrated = false;
  const ready = (): ItemRepository => {
    if (!migrated) throw new Error("${s.name} used before start-up finished");
    return store;
  };
  const service: Service = createService({
    name: SERVICE,
    version: VERSION,
    config: config.runtime,
    files: [${fileSymbol(s.name, s.name)}],
    services: [${s.pascal}Service],
    ...observe,
    logger,
    routes(router) {
      router.service(${s.pascal}Service, create${s.pascal}ServiceHandlers(ready));
    },
    async prepare() {
      await database.migrate(migrationsFolder);
      observeDatabasePool(database, service.telemetry.meter);
      migrated = true;
${publishSetup}${consumeSetup}    },
    ...databaseServiceOptions(database),
    announce: (where) => discovery.announce(where),
    async onShutdown() {
      await discovery.close();
${s.consumes.length ? "      for (const c of consumers) await c.stop();\n      await nc?.drain();\n" : ""}${s.publishesEvents ? "      await publisher?.stop();\n" : ""}      await database.close();
    },
  });
  return service;
}
`;
}

function domainTs(s: ServiceSpec): string {
  return `/** An item of the ${s.name} service. Ids are UUIDv7 (creation order). */
export interface Item {
  id: string;
  ownerId: string;
  requestId: string;
  name: string;
  createdAt: Date;
}

export type NewItem = Omit<Item, "createdAt">;

/** Who reads: the subject and roles the gateway verified. */
export interface Reader {
  subject: string;
  roles: readonly string[];
}

export class ItemNotFoundError extends Error {
  override readonly name = "ItemNotFoundError";
  constructor(id: string, options?: ErrorOptions) {
    super(\`item \${id} not found\`, options);
  }
}

export class ItemAccessDeniedError extends Error {
  override readonly name = "ItemAccessDeniedError";
  constructor(options?: ErrorOptions) {
    super("the items of another user need the admin role", options);
  }
}

export class InvalidItemNameError extends Error {
  override readonly name = "InvalidItemNameError";
  constructor(options?: ErrorOptions) {
    super("name: must contain a visible character", options);
  }
}

/** An item's name as stored: trimmed, and not blank. */
export function itemName(raw: string): string {
  const name = raw.trim();
  if (name.length === 0) throw new InvalidItemNameError();
  return name;
}

/** An item is its owner's (and an admin's) to read. */
export function assertMayRead(reader: Reader, item: Item): void {
  if (reader.subject !== item.ownerId && !reader.roles.includes("admin")) throw new ItemAccessDeniedError();
}
`;
}

function domainTestTs(): string {
  return `import { describe, expect, it } from "vitest";
import { assertMayRead, InvalidItemNameError, ItemAccessDeniedError, itemName } from "./item.js";

describe("item rules", () => {
  it("trims a name and refuses a blank one", () => {
    expect(itemName("  a thing ")).toBe("a thing");
    expect(() => itemName(" \\t ")).toThrow(InvalidItemNameError);
  });

  it("lets the owner and an admin read an item, nobody else", () => {
    const item = { id: "i", ownerId: "owner", requestId: "r", name: "n", createdAt: new Date() };
    expect(() => assertMayRead({ subject: "owner", roles: [] }, item)).not.toThrow();
    expect(() => assertMayRead({ subject: "someone", roles: ["admin"] }, item)).not.toThrow();
    expect(() => assertMayRead({ subject: "someone", roles: ["customer"] }, item)).toThrow(ItemAccessDeniedError);
  });
});
`;
}

function schemaTs(s: ServiceSpec): string {
  const extra: string[] = [];
  const names = ["items"];
  if (s.publishesEvents) {
    extra.push(`/** Events written in the transaction of the change they report; the relay publishes them. */
export const outbox = outboxTable();`);
    names.push("outbox");
  }
  if (s.consumes.length) {
    extra.push(`/** Events of other services this one has applied. */
export const receivedEvents = pgTable("received_events", {
  eventId: text("event_id").primaryKey(),
  type: text("type").notNull(),
  source: text("source").notNull(),
  time: timestamp("time", { withTimezone: true, mode: "date" }).notNull(),
});

/** Events this service has applied, per consumer: the exactly-once guard. */
export const inbox = inboxTable();`);
    names.push("receivedEvents", "inbox");
  }
  const eventsImport = [
    ...(s.consumes.length ? ["inboxTable"] : []),
    ...(s.publishesEvents ? ["outboxTable"] : []),
  ];
  return `${eventsImport.length ? `import { ${eventsImport.join(", ")} } from "@meshwork/events";\n` : ""}import { pgTable, text, timestamp, unique, uuid } from "drizzle-orm/pg-core";

/** The ${s.name} service's items; (owner, request id) is the idempotency key of CreateItem. */
export const items = pgTable(
  "items",
  {
    id: uuid("id").primaryKey(),
    ownerId: text("owner_id").notNull(),
    requestId: uuid("request_id").notNull(),
    name: text("name").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [unique("items_owner_request_unique").on(t.ownerId, t.requestId)],
);
${extra.length ? `\n${extra.join("\n\n")}\n` : ""}
export const schema = { ${names.join(", ")} };
export type ${s.pascal}Schema = typeof schema;
`;
}

function storeTs(s: ServiceSpec): string {
  const pub = s.publishesEvents;
  return `${pub ? `import { create } from "@bufbuild/protobuf";\nimport { timestampFromDate } from "@bufbuild/protobuf/wkt";\nimport { ItemCreatedSchema } from "${contract(s, "events")}";\n` : ""}import type { Database } from "@meshwork/db";
${pub ? `import { createEnvelope, enqueueEvents } from "@meshwork/events";\n` : ""}import { and, asc, eq, gt } from "drizzle-orm";
import { type Item, ItemNotFoundError } from "../../domain/item.js";
import type { ItemRepository } from "../../domain/ports.js";
import { items, ${pub ? "outbox, " : ""}type ${s.pascal}Schema } from "./schema.js";
${pub ? `\n/** \`ce-source\` of the events this service publishes. */\nconst EVENT_SOURCE = "meshwork/${s.name}";\n` : ""}
/**
 * Items in Postgres. CreateItem is one transaction: the insert (or the row the same request id
 * made before)${pub ? " and, for a new item, its ItemCreated in the outbox" : ""}.
 */
export function createItemStore(db: Database<${s.pascal}Schema>${pub ? ", namespace: string" : ""}): ItemRepository {
  return {
    create: (item) =>
      db.transaction(async (tx) => {
        const [row] = await tx.insert(items).values(item).onConflictDoNothing().returning();
        if (!row) {
          const [existing] = await tx
            .select()
            .from(items)
            .where(and(eq(items.ownerId, item.ownerId), eq(items.requestId, item.requestId)));
          if (!existing) throw new Error("insert conflicted but no row has its request id");
          return existing;
        }
${
  pub
    ? `        const event = create(ItemCreatedSchema, {
          itemId: row.id,
          ownerId: row.ownerId,
          name: row.name,
          createTime: timestampFromDate(row.createdAt),
        });
        await enqueueEvents(tx, outbox, [createEnvelope(ItemCreatedSchema, event, { source: EVENT_SOURCE, namespace })]);
`
    : ""
}        return row;
      }),

    async get(id: string): Promise<Item> {
      const [row] = await db.select().from(items).where(eq(items.id, id));
      if (!row) throw new ItemNotFoundError(id);
      return row;
    },

    listAfter: (afterId, limit) =>
      db
        .select()
        .from(items)
        .where(afterId ? gt(items.id, afterId) : undefined)
        .orderBy(asc(items.id))
        .limit(limit),
  };
}
`;
}

function rpcTs(s: ServiceSpec): string {
  return `import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type Item as ItemMessage,
  ItemSchema,
  type ${s.pascal}Service,
} from "${contract(s, s.name)}";
import { InvalidPageTokenError } from "@meshwork/db";
import { mapErrors, requireCaller } from "@meshwork/runtime";
import { createItem } from "../../app/commands/create-item.js";
import { getItem } from "../../app/queries/get-item.js";
import { listItems } from "../../app/queries/list-items.js";
import {
  InvalidItemNameError,
  type Item,
  ItemAccessDeniedError,
  ItemNotFoundError,
  type Reader,
} from "../../domain/item.js";
import type { ItemRepository } from "../../domain/ports.js";

function toItem(i: Item): ItemMessage {
  return create(ItemSchema, { id: i.id, ownerId: i.ownerId, name: i.name, createTime: timestampFromDate(i.createdAt) });
}

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof ItemNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof ItemAccessDeniedError) return new ConnectError(err.message, Code.PermissionDenied);
  if (err instanceof InvalidItemNameError || err instanceof InvalidPageTokenError)
    return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/** The caller the gateway verified (UNAUTHENTICATED without one). */
function readerOf(ctx: HandlerContext): Reader {
  const { subject, roles } = requireCaller(ctx, "${s.pascal}Service");
  return { subject, roles };
}

/** Translates between the proto messages and the use cases. */
export function create${s.pascal}ServiceHandlers(items: () => ItemRepository): ServiceImpl<typeof ${s.pascal}Service> {
  return {
    createItem: (req, ctx) =>
      mapped(async () => {
        const owner = readerOf(ctx);
        const item = await createItem(
          { items: items() },
          { ownerId: owner.subject, requestId: req.requestId, name: req.name },
        );
        return { item: toItem(item) };
      }),
    getItem: (req, ctx) =>
      mapped(async () => ({ item: toItem(await getItem({ items: items() }, readerOf(ctx), req.id)) })),
    listItems: (req) =>
      mapped(async () => {
        const page = await listItems({ items: items() }, { pageSize: req.pageSize, pageToken: req.pageToken });
        return { items: page.items.map(toItem), nextPageToken: page.nextPageToken };
      }),
  };
}
`;
}

function intTestTs(s: ServiceSpec): string {
  const events = s.publishesEvents || s.consumes.length > 0;
  const imports = [
    `import { randomUUID } from "node:crypto";`,
    `import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";`,
    `import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";`,
    ...s.consumes.map(
      (c, i) =>
        `import { ${fileSymbol(c, "events")}${i === 0 ? "" : ""} } from "@meshwork/contracts/meshwork/${c}/v1/events";`,
    ),
    ...(s.publishesEvents ? [`import { ItemCreatedSchema } from "${contract(s, "events")}";`] : []),
    `import { ${s.pascal}Service } from "${contract(s, s.name)}";`,
    ...(events
      ? [
          `import { ${[...(s.consumes.length ? ["cloudEventHeaders"] : []), "connectNats", ...(s.consumes.length ? ["createEnvelope", "provision"] : []), "streamName"].join(", ")} } from "@meshwork/events";`,
        ]
      : []),
    `import type { Service } from "@meshwork/runtime";`,
    `import { testIdentity } from "@meshwork/runtime/testing";`,
    `import { createTestDatabase, type TestDatabase${events ? ", uniqueName" : ""}${s.consumes.length ? ", waitFor" : ""} } from "@meshwork/testing";`,
    ...(events
      ? [
          `import { ${s.publishesEvents ? "AckPolicy, DeliverPolicy, jetstream, " : s.consumes.length ? "jetstream, " : ""}jetstreamManager } from "@nats-io/jetstream";`,
        ]
      : []),
    ...(s.consumes.length ? [`import { headers as natsHeaders } from "@nats-io/transport-node";`] : []),
    ...(s.consumes.length ? [`import postgres from "postgres";`] : []),
    `import { afterAll, beforeAll, describe, expect, it } from "vitest";`,
    `import { loadConfig } from "./config.js";`,
    `import { create${s.pascal}Service } from "./server.js";`,
  ];
  const natsUrl = `process.env.NATS_URL ?? "nats://127.0.0.1:4222"`;
  const publishTest = s.publishesEvents
    ? `
  it("publishes ItemCreated through the outbox once per item, not again for a retried request", async () => {
    const requestId = randomUUID();
    const { item } = await as(OWNER).createItem({ requestId, name: "evented" });
    await as(OWNER).createItem({ requestId, name: "evented" });
    const nc = await connectNats(${natsUrl}, "test");
    try {
      const js = jetstream(nc);
      const stream = streamName(namespace, "${s.name.toUpperCase()}");
      const jsm = await jetstreamManager(nc);
      const consumer = await jsm.consumers.add(stream, {
        ack_policy: AckPolicy.None,
        deliver_policy: DeliverPolicy.All,
        filter_subject: \`\${namespace}meshwork.${s.name}.>\`,
      });
      const seen: string[] = [];
      const deadline = Date.now() + 30_000;
      const c = await js.consumers.get(stream, consumer.name);
      while (Date.now() < deadline && !seen.includes(item?.id ?? "")) {
        const batch = await c.fetch({ max_messages: 100, expires: 1_000 });
        for await (const m of batch) {
          expect(m.headers?.get("ce-type")).toBe(ItemCreatedSchema.typeName);
          seen.push(fromBinary(ItemCreatedSchema, m.data).itemId);
        }
      }
      expect(seen.filter((id) => id === item?.id)).toHaveLength(1);
    } finally {
      await nc.close();
    }
  });
`
    : "";
  const consumeTest = s.consumes.length
    ? `
  it("applies each event of ${s.consumes.join(", ")} once, however often it is delivered", async () => {
    const nc = await connectNats(${natsUrl}, "test");
    const sql = postgres(db.url, { max: 1 });
    try {
      // The producer owns its stream (this service only waits for it): declared here as it would.
      await provision(await jetstreamManager(nc), {
        streams: [{ name: streamName(namespace, "${(s.consumes[0] as string).toUpperCase()}"), subjects: [\`\${namespace}meshwork.${s.consumes[0]}.>\`] }],
      });
      const js = jetstream(nc);
      const [message] = ${fileSymbol(s.consumes[0] as string, "events")}.messages;
      if (!message) throw new Error("the consumed events file has no message");
      const envelope = createEnvelope(message, create(message), { source: "test", namespace });
      const h = natsHeaders();
      for (const [k, v] of Object.entries(cloudEventHeaders(envelope))) h.set(k, v);
      await js.publish(envelope.subject, envelope.data, { headers: h });
      // The same event again (a redelivery from the producer's side): still one row.
      await js.publish(envelope.subject, envelope.data, { headers: h });
      await waitFor(async () => {
        const rows = await sql\`select event_id, type from received_events where event_id = \${envelope.id}\`;
        return rows.length === 1 && rows[0]?.type === message.typeName;
      }, { timeoutMs: 30_000 });
      const inbox = await sql\`select count(*)::int as n from inbox where event_id = \${envelope.id}\`;
      expect(inbox[0]?.n).toBe(1);
    } finally {
      await sql.end();
      await nc.close();
    }
  });
`
    : "";
  const protobuf = [...(s.consumes.length ? ["create"] : []), ...(s.publishesEvents ? ["fromBinary"] : [])];
  const createImport = protobuf.length
    ? `import { ${protobuf.join(", ")} } from "@bufbuild/protobuf";\n`
    : "";
  const cleanupStreams = events
    ? `    const nc = await connectNats(${natsUrl}, "cleanup");
    const jsm = await jetstreamManager(nc);
    for (const stream of ${JSON.stringify([...(s.publishesEvents ? [s.name.toUpperCase()] : []), ...s.consumes.map((c) => c.toUpperCase()), ...(s.consumes.length ? [`DLQ_${s.name.toUpperCase()}`] : [])])})
      await jsm.streams.delete(streamName(namespace, stream)).catch(() => {});
    await nc.close();
`
    : "";
  return `${createImport}${imports.join("\n")}

const OWNER = "00000000-0000-7000-8000-00000000000a";
const OTHER = "00000000-0000-7000-8000-00000000000b";

/** The gateway's key, as the service of these tests trusts it (\`IDENTITY_TRUST\`). */
const identity = testIdentity(["gateway"]);

/** Sends the signed assertion the gateway sends upstream for a caller it verified. */
function asCaller(subject: string, roles: string): Interceptor {
  return (next) => (req) => {
    for (const [name, value] of Object.entries(identity.headers("${s.name}", subject, roles))) req.header.set(name, value);
    return next(req);
  };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (e: unknown) => ConnectError.from(e),
  );

describe("${s.name} service on the real Postgres${events ? " and NATS" : ""}", () => {
  let db: TestDatabase;
  let service: Service;
  let url = "";
${events ? `  const namespace = \`\${uniqueName("t")}.\`;\n` : ""}  const as = (subject: string, roles = "customer", grpc = false) =>
    createClient(
      ${s.pascal}Service,
      grpc
        ? createGrpcTransport({ baseUrl: url, interceptors: [asCaller(subject, roles)] })
        : createConnectTransport({ baseUrl: url, httpVersion: "2", interceptors: [asCaller(subject, roles)] }),
    );

  beforeAll(async () => {
    db = await createTestDatabase("mw_${s.name}");
    service = await create${s.pascal}Service(
      loadConfig({
        PORT: "0",
        LOG_LEVEL: "silent",
        DATABASE_URL: db.url,
        DISCOVERY: "static",
        IDENTITY_TRUST: identity.trustText,
${events ? "        EVENTS_NAMESPACE: namespace,\n" : ""}      }),
    );
    url = (await service.start()).url;
  });
  afterAll(async () => {
    await service?.shutdown();
    await db?.drop();
${cleanupStreams}  });

  it("creates an item for its caller, idempotently by request id, and gets it back over gRPC", async () => {
    const requestId = randomUUID();
    const { item } = await as(OWNER).createItem({ requestId, name: "  first  " });
    expect(item).toMatchObject({ ownerId: OWNER, name: "first" });
    const again = await as(OWNER).createItem({ requestId, name: "first" });
    expect(again.item?.id).toBe(item?.id);
    const got = await as(OWNER, "customer", true).getItem({ id: item?.id ?? "" });
    expect(got.item).toEqual(item);
  });

  it("refuses bad input, strangers and unknown ids with precise codes", async () => {
    const bad = await failure(as(OWNER).createItem({ requestId: "not-a-uuid", name: "x" }));
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("request_id");
    const blank = await failure(as(OWNER).createItem({ requestId: randomUUID(), name: "   " }));
    expect(blank.code).toBe(Code.InvalidArgument);
    expect(blank.rawMessage).toContain("name");
    const { item } = await as(OWNER).createItem({ requestId: randomUUID(), name: "mine" });
    const stranger = await failure(as(OTHER).getItem({ id: item?.id ?? "" }));
    expect(stranger.code).toBe(Code.PermissionDenied);
    expect((await as(OTHER, "admin").getItem({ id: item?.id ?? "" })).item?.id).toBe(item?.id);
    const missing = await failure(as(OWNER).getItem({ id: randomUUID() }));
    expect(missing.code).toBe(Code.NotFound);
    const anonymous = createClient(${s.pascal}Service, createConnectTransport({ baseUrl: url, httpVersion: "2" }));
    expect((await failure(anonymous.createItem({ requestId: randomUUID(), name: "x" }))).code).toBe(Code.Unauthenticated);
  });

  it("pages through the items with an opaque token", async () => {
    for (let i = 0; i < 3; i++) await as(OWNER).createItem({ requestId: randomUUID(), name: \`page \${i}\` });
    const seen = new Set<string>();
    let token = "";
    do {
      const page = await as(OTHER).listItems({ pageSize: 2, pageToken: token });
      expect(page.items.length).toBeLessThanOrEqual(2);
      for (const i of page.items) seen.add(i.id);
      token = page.nextPageToken;
    } while (token);
    expect(seen.size).toBeGreaterThanOrEqual(3);
    const bad = await failure(as(OTHER).listItems({ pageToken: "bm9wZQ" }));
    expect(bad.code).toBe(Code.InvalidArgument);
  });
${publishTest}${consumeTest}});
`;
}
