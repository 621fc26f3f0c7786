import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { InventoryService } from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import {
  backfill,
  type CatalogueVersions,
  formatLag,
  type NatsTarget,
  readSyncLag,
  type SyncLag,
} from "./strangler-sync.js";
import { renderTable } from "./table.js";

/** A route as the gateway's admin `/strangler` reports it. */
interface RouteStatus {
  name: string;
  pattern: string;
  weight: number;
  shadow: boolean;
  transcoded: boolean;
  requests: { legacy: number; new: number };
  share_new: number | null;
  latency_ms: Record<"legacy" | "new" | "shadow", { p50: number | null; p95: number | null }>;
  shadow_stats: { compared: number; differed: number; failed: number; diff_rate: number | null };
}

export interface StranglerCommandOptions {
  /** The gateway's admin address (`http://127.0.0.1:9901`). */
  admin: string;
  /** The gateway (`http://127.0.0.1:8080`): backfill reads the new catalogue through it. */
  gateway?: string;
  /** The broker, for the sync lag and the backfill's wait; absent: no sync lag shown. */
  nats?: NatsTarget;
  /** The legacy database (`LEGACY_DATABASE_URL`, or the file `meshctl up` writes in MESHWORK_HOME). */
  legacyDatabaseUrl?: string;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

const usage = `usage: meshctl strangler status
       meshctl strangler set <route> <percent>      0-100 of users to the new service (sticky per user)
       meshctl strangler shadow <route> on|off      legacy answers; the new service's answer is compared
       meshctl strangler diffs <route> [--limit N]  the differing fields counted, the latest samples
       meshctl strangler backfill                   catalogue -> inventory, users -> users, orders -> orders; then the CDC
  (--gateway-admin http://127.0.0.1:9901 or GATEWAY_ADMIN_URL for another gateway)
`;

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)}%`);
const ms = (x: number | null) => (x === null ? "-" : `${x}ms`);

function sideOf(r: RouteStatus): string {
  if (!r.transcoded) return "legacy only";
  return r.weight === 0 ? "legacy" : r.weight === 100 ? "new" : "split";
}

/** The status table: per route its side, weight, shadow, traffic share, diff rate and latency of both sides. */
export function renderStatus(
  status: { legacy: string | null; routes: RouteStatus[] },
  lags: readonly SyncLag[] = [],
): string {
  const lagOf = (route: string) => {
    const l = lags.find((x) => x.routes.includes(route));
    return l ? formatLag(l) : "-";
  };
  const rows = status.routes.map((r) => [
    r.name,
    r.pattern,
    sideOf(r),
    r.transcoded ? `${r.weight}%` : "-",
    r.shadow ? "on" : "off",
    `${r.requests.legacy}/${r.requests.new}`,
    pct(r.share_new),
    r.shadow_stats.compared === 0 ? "-" : `${pct(r.shadow_stats.diff_rate)} of ${r.shadow_stats.compared}`,
    `${ms(r.latency_ms.legacy.p50)} / ${ms(r.latency_ms.legacy.p95)}`,
    `${ms(r.latency_ms.new.p50)} / ${ms(r.latency_ms.new.p95)}`,
    `${ms(r.latency_ms.shadow.p50)}`,
    lagOf(r.name),
  ]);
  const flows = lags.map((l) => `sync ${l.flow}: ${formatLag(l)}\n`).join("");
  return `legacy: ${status.legacy ?? "(none: the new services answer every route)"}\n${flows}${renderTable(
    [
      "ROUTE",
      "PATTERN",
      "SIDE",
      "WEIGHT",
      "SHADOW",
      "REQ LEGACY/NEW",
      "NEW SHARE",
      "DIFF RATE",
      "LEGACY P50/P95",
      "NEW P50/P95",
      "SHADOW P50",
      "SYNC LAG",
    ],
    rows,
  )}\n`;
}

async function call(admin: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${admin}${path}`, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(5_000),
  });
  // biome-ignore lint/suspicious/noExplicitAny: the admin API's JSON, read field by field
  return { status: res.status, body: (await res.json()) as any };
}

/** `meshctl strangler ...` against a running gateway's admin listener. */
export async function stranglerCommand(
  args: readonly string[],
  options: StranglerCommandOptions & { limit?: number },
): Promise<number> {
  const { out, err, admin } = options;
  const [sub, route, value] = args;
  try {
    switch (sub) {
      case "status": {
        const r = await call(admin, "GET", "/strangler");
        const lags = options.nats ? await readSyncLag(options.nats).catch(() => []) : [];
        out.write(renderStatus(r.body, lags));
        return 0;
      }
      case "set": {
        if (!route || value === undefined || !/^\d{1,3}$/.test(value) || Number(value) > 100) {
          err.write(`meshctl strangler set: a route and a percentage from 0 to 100\n${usage}`);
          return 2;
        }
        const r = await call(admin, "POST", `/strangler/routes/${encodeURIComponent(route)}`, {
          weight: Number(value),
        });
        if (r.status !== 200) {
          err.write(`${r.body.message}\n`);
          return 1;
        }
        out.write(
          `${route}: ${r.body.weight}% of users on the new service (shadow ${r.body.shadow ? "on" : "off"})\n`,
        );
        return 0;
      }
      case "shadow": {
        if (!route || (value !== "on" && value !== "off")) {
          err.write(`meshctl strangler shadow: a route and on or off\n${usage}`);
          return 2;
        }
        const r = await call(admin, "POST", `/strangler/routes/${encodeURIComponent(route)}`, {
          shadow: value,
        });
        if (r.status !== 200) {
          err.write(`${r.body.message}\n`);
          return 1;
        }
        out.write(`${route}: shadow ${r.body.shadow ? "on" : "off"} (weight ${r.body.weight}%)\n`);
        return 0;
      }
      case "diffs": {
        if (!route) {
          err.write(`meshctl strangler diffs: a route\n${usage}`);
          return 2;
        }
        const r = await call(admin, "GET", `/strangler/routes/${encodeURIComponent(route)}/diffs`);
        if (r.status !== 200) {
          err.write(`${r.body.message}\n`);
          return 1;
        }
        const d = r.body as {
          compared: number;
          differed: number;
          fields: Record<string, number>;
          samples: Array<{
            at: string;
            request: string;
            diffs: Array<{ path: string; legacy: unknown; new: unknown }>;
          }>;
        };
        out.write(`${route}: ${d.differed} of ${d.compared} shadowed answers differed\n`);
        const fields = Object.entries(d.fields);
        if (fields.length > 0)
          out.write(
            `${renderTable(
              ["FIELD", "TIMES"],
              fields.map(([f, n]) => [f, String(n)]),
            )}\n`,
          );
        const samples = d.samples.slice(-(options.limit ?? 5));
        for (const s of samples) {
          out.write(`\n${s.at}  ${s.request}\n`);
          out.write(
            `${renderTable(
              ["FIELD", "LEGACY", "NEW"],
              s.diffs.map((x) => [
                x.path,
                JSON.stringify(x.legacy) ?? "(absent)",
                JSON.stringify(x.new) ?? "(absent)",
              ]),
            )}\n`,
          );
        }
        return 0;
      }
      case "backfill":
        return await backfillCommand(options);
      default:
        err.write(usage);
        return 2;
    }
  } catch (e) {
    err.write(
      `the gateway's admin at ${admin} does not answer: ${e instanceof Error ? e.message : String(e)}\n`,
    );
    return 1;
  }
}

/** Where `meshctl up` leaves the legacy database's URL (mode 0600), for `strangler backfill`. */
export function legacyDatabaseUrlFile(home: string): string {
  return join(home, "legacy-database-url");
}

/** LEGACY_DATABASE_URL, else the file `meshctl up` wrote; undefined when neither exists. */
export function findLegacyDatabaseUrl(home: string, env = process.env): string | undefined {
  if (env.LEGACY_DATABASE_URL) return env.LEGACY_DATABASE_URL;
  try {
    return readFileSync(legacyDatabaseUrlFile(home), "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

async function catalogueVia(gateway: string): Promise<CatalogueVersions> {
  const inventory = createClient(InventoryService, createGrpcTransport({ baseUrl: gateway }));
  const versions: CatalogueVersions = new Map();
  for (let token = ""; ; ) {
    const page = await inventory.listProducts({ pageSize: 100, pageToken: token });
    for (const p of page.products) versions.set(p.id, Number(p.version));
    token = page.nextPageToken;
    if (!token) return versions;
  }
}

async function backfillCommand(options: StranglerCommandOptions): Promise<number> {
  const { out, err } = options;
  if (!options.legacyDatabaseUrl || !options.nats || !options.gateway) {
    err.write(
      "meshctl strangler backfill: needs the legacy database (LEGACY_DATABASE_URL, or a mesh started by\n" +
        "meshctl up), NATS (--nats-url) and the gateway (--gateway)\n",
    );
    return 2;
  }
  const gateway = options.gateway;
  out.write(
    "backfill: legacy's products and stock -> inventory, its users -> users, its orders -> orders (snapshots through the CDC relay)\n",
  );
  try {
    const r = await backfill({
      ...options.nats,
      legacyDatabaseUrl: options.legacyDatabaseUrl,
      catalogue: () => catalogueVia(gateway),
      out,
    });
    out.write(
      `${r.products} products snapshotted` +
        (r.firstSeq === null ? "" : ` (capture sequence ${r.firstSeq}-${r.lastSeq})`) +
        `; inventory applied them in ${r.appliedInMs} ms: ` +
        `${r.created} created, ${r.updated} updated, ${r.unchanged} unchanged\n` +
        `${r.users} users snapshotted; ` +
        (r.usersApplied
          ? "the users service applied them (legacy ids and passwords kept)\n"
          : "the users service is not consuming LEGACY_USERS yet: they wait on the stream (24 h)\n") +
        `${r.orders} orders snapshotted; ` +
        (r.ordersApplied
          ? "the orders service applied them (legacy ids kept, no saga)\n"
          : "the orders service is not consuming LEGACY yet: they wait on the stream\n") +
        "from now on the CDC keeps inventory in sync (meshctl strangler status: SYNC LAG)\n",
    );
    return 0;
  } catch (e) {
    err.write(`meshctl strangler backfill: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
