import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cacheBucket } from "@meshwork/cache";
import { type NatsCredentials, streamName } from "@meshwork/events";

/**
 * Streams a service consumes besides its own (its durable consumers live there, and it gets no
 * STREAM.CREATE/UPDATE on them: it waits for their owner to create them). Every service
 * owns `meshwork.<name>.>` (stream `<NAME>`) and `dlq.<name>.>` (stream `DLQ_<NAME>`). A service
 * can also declare them in its package.json (`"meshwork": { "consumes": [...] }`, what
 * `meshctl new service --consumes-events` writes), which the callers pass in.
 */
const CONSUMES: Record<string, readonly string[]> = {
  notifications: ["users", "payments", "orders"],
};

/**
 * Streams a service owns besides `<NAME>` on which it may declare and publish but never consume:
 * legacy's captured users (LEGACY_USERS, `meshwork.legacy_users.>`, with legacy's password
 * hashes), which only the users service reads (it lists `legacy_users` in its `consumes`).
 */
const PUBLISHES_ONLY: Record<string, readonly string[]> = {
  legacy: ["legacy_users"],
};

/**
 * Durable consumers a service deletes once drained: users' old `users-legacy-sync` on LEGACY,
 * from before legacy's users had a stream of their own (apps/users server.ts).
 */
const RETIRES: Record<string, readonly { stream: string; durable: string }[]> = {
  users: [{ stream: "legacy", durable: "users-legacy-sync" }],
};

/** Declaring a stream and nothing else: no consumer can be created or read on it. */
function streamDeclarer(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.CREATE.${stream}`,
    `$JS.API.STREAM.UPDATE.${stream}`,
  ];
}

/**
 * Streams a service follows with an ordered consumer of each instance (the cache's invalidation
 * feed, libs/cache): orders drops changed prices on inventory's ProductUpdated, inventory its own
 * products on its events.
 */
const FOLLOWS: Record<string, readonly string[]> = {
  inventory: ["inventory"],
  orders: ["inventory"],
};

/** Following a stream: ordered consumers are created, re-created after a gap, and deleted. */
function streamFollower(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
  ];
}

/** The service's own cache bucket (the shared tier on NATS KV): create, read, write its keys. */
function cacheBucketUser(bucket: string): string[] {
  const kv = `KV_${bucket}`;
  return [
    `$KV.${bucket}.>`,
    `$JS.API.STREAM.INFO.${kv}`,
    `$JS.API.STREAM.CREATE.${kv}`,
    `$JS.API.STREAM.MSG.GET.${kv}`,
    `$JS.API.DIRECT.GET.${kv}`,
    `$JS.API.DIRECT.GET.${kv}.>`,
  ];
}

/** The admin user meshctl itself connects as (status, dead letters); never given to a service. */
export const ADMIN_USER = "meshctl";

export interface Permissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe: { allow: string[]; deny?: string[] };
}

export interface MeshTopology {
  /** The discovery registry's KV bucket. */
  bucket: string;
  /** `EVENTS_NAMESPACE` of the mesh (empty normally). */
  namespace: string;
}

/** What a reader of the registry may do on its KV stream: read and watch it, never change it. */
function registryReader(bucket: string): string[] {
  const kv = `KV_${bucket}`;
  return [
    "$JS.API.INFO",
    `$JS.API.STREAM.INFO.${kv}`,
    // Creating the bucket when it is missing (creating an existing stream changes nothing).
    `$JS.API.STREAM.CREATE.${kv}`,
    // The watch is an ordered consumer: created, recreated after a gap, deleted, flow-controlled.
    `$JS.API.CONSUMER.CREATE.${kv}`,
    `$JS.API.CONSUMER.CREATE.${kv}.>`,
    `$JS.API.CONSUMER.DELETE.${kv}.>`,
    `$JS.API.CONSUMER.INFO.${kv}.>`,
    `$JS.FC.${kv}.>`,
  ];
}

/** Provisioning and consuming one events stream (never deleting or purging it). */
function streamUser(stream: string): string[] {
  const [info, ...consume] = streamConsumer(stream);
  return [info ?? "", `$JS.API.STREAM.CREATE.${stream}`, `$JS.API.STREAM.UPDATE.${stream}`, ...consume];
}

/** Consuming one events stream another service declares: its durable consumers only. */
function streamConsumer(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.DURABLE.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
}

/**
 * A service's NATS permissions: publish only its own event subjects and dead letters, write only
 * its own registry keys (`$KV.<bucket>.<service>.>`: the key prefix is the identity, so no other
 * user can announce an endpoint of this service), use the JetStream API of its own streams and of
 * those it consumes and read the registry; receive only on its own inbox prefix.
 */
export function servicePermissions(
  service: string,
  mesh: MeshTopology,
  consumes: readonly string[] = CONSUMES[service] ?? [],
): Permissions {
  const ns = mesh.namespace;
  const own = [streamName(ns, service.toUpperCase()), streamName(ns, `DLQ_${service.toUpperCase()}`)];
  const consumed = consumes.map((s) => streamName(ns, s.toUpperCase()));
  const publishesOnly = PUBLISHES_ONLY[service] ?? [];
  return {
    publish: {
      allow: [
        `${ns}meshwork.${service}.>`,
        ...publishesOnly.map((s) => `${ns}meshwork.${s}.>`),
        `${ns}dlq.${service}.>`,
        `$KV.${mesh.bucket}.${service}.>`,
        ...registryReader(mesh.bucket),
        ...own.flatMap(streamUser),
        // No service declares another's stream (libs/events createForeignConsumer): only its
        // owner sets its config, and no one but the owner may create a stream of that name.
        ...consumed.flatMap(streamConsumer),
        ...publishesOnly.flatMap((s) => streamDeclarer(streamName(ns, s.toUpperCase()))),
        ...(RETIRES[service] ?? []).map(
          (r) => `$JS.API.CONSUMER.DELETE.${streamName(ns, r.stream.toUpperCase())}.${r.durable}`,
        ),
        ...(FOLLOWS[service] ?? []).flatMap((s) => streamFollower(streamName(ns, s.toUpperCase()))),
        ...cacheBucketUser(cacheBucket(ns, service)),
      ],
    },
    subscribe: { allow: [`_INBOX_${service}.>`] },
  };
}

/**
 * The gateway's: it reads the registry (never writes it) and uses its own cache bucket, where the
 * gateways share the users service's JWKS.
 */
export function gatewayPermissions(mesh: MeshTopology): Permissions {
  return {
    publish: {
      allow: [...registryReader(mesh.bucket), ...cacheBucketUser(cacheBucket(mesh.namespace, "gateway"))],
    },
    subscribe: { allow: ["_INBOX_gateway.>"] },
  };
}

/** One user of the server's `authorization` block. */
export interface NatsUser extends NatsCredentials {
  /** Absent: everything (the admin). */
  permissions?: Permissions;
}

/** A user as a configuration file names it: its password given, or read from the server's environment. */
export interface ConfigUser {
  user: string;
  password: string | { env: string };
  permissions?: Permissions;
}

const quote = (s: string) => JSON.stringify(s);
const list = (xs: readonly string[]) => `[${xs.map(quote).join(", ")}]`;

function renderPermissions(p: Permissions): string {
  const side = (s: { allow: string[]; deny?: string[] }) =>
    `{ allow: ${list(s.allow)}${s.deny ? `, deny: ${list(s.deny)}` : ""} }`;
  return `{ publish: ${side(p.publish)}, subscribe: ${side(p.subscribe)} }`;
}

/**
 * A nats-server (2.9) configuration: JetStream with its store, loopback only, and an
 * `authorization` block with one user per process. With no `no_auth_user`, a client without
 * credentials is refused.
 */
export function renderNatsConfig(options: {
  host: string;
  port: number;
  storeDir: string;
  users: readonly ConfigUser[];
  /** The monitoring port, if any. */
  httpPort?: number;
  /** First line(s), as comments. */
  header?: string;
}): string {
  const users = options.users.map((u) => {
    // An environment variable is referenced unquoted (`$USERS_NATS_PASSWORD`): nats-server reads it.
    const password = typeof u.password === "string" ? quote(u.password) : `$${u.password.env}`;
    const permissions = u.permissions ? `, permissions: ${renderPermissions(u.permissions)}` : "";
    return `    { user: ${quote(u.user)}, password: ${password}${permissions} }`;
  });
  return [
    options.header ??
      "# Written by meshctl: every process has its own user and permissions. Owner-only: it holds passwords.",
    `host: ${quote(options.host)}`,
    `port: ${options.port}`,
    ...(options.httpPort ? [`http_port: ${options.httpPort}`] : []),
    `jetstream { store_dir: ${quote(options.storeDir)} }`,
    "authorization {",
    "  users = [",
    users.join(",\n"),
    "  ]",
    "}",
    "",
  ].join("\n");
}

/**
 * The users of the mesh's NATS: one per service, the gateway, and meshctl's admin. Passwords are
 * made once (24 random bytes) and kept in `<dir>/credentials.json`, readable by the owner only.
 */
export function meshNatsUsers(
  dir: string,
  services: readonly (string | { name: string; consumes?: readonly string[] })[],
  mesh: MeshTopology,
): NatsUser[] {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, "credentials.json");
  const saved = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>) : {};
  const password = (user: string) => {
    saved[user] ??= randomBytes(24).toString("base64url");
    return saved[user];
  };
  const users: NatsUser[] = [
    ...services.map((entry) => {
      const s = typeof entry === "string" ? { name: entry } : entry;
      return {
        user: s.name,
        password: password(s.name),
        permissions: servicePermissions(s.name, mesh, s.consumes),
      };
    }),
    { user: "gateway", password: password("gateway"), permissions: gatewayPermissions(mesh) },
    { user: ADMIN_USER, password: password(ADMIN_USER) },
  ];
  writeFileSync(file, `${JSON.stringify(saved, null, 2)}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return users;
}

/**
 * meshctl's own admin user on the NATS it started (`status`, `events dlq`), if it ever started
 * one from this home; undefined otherwise (an external NATS, with no users of meshctl's).
 */
export function adminNatsCredentials(dir: string): NatsCredentials | undefined {
  const file = join(dir, "credentials.json");
  if (!existsSync(file)) return undefined;
  const password = (JSON.parse(readFileSync(file, "utf8")) as Record<string, string>)[ADMIN_USER];
  return password ? { user: ADMIN_USER, password } : undefined;
}
