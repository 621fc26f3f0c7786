import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

/** What `meshctl` knows of a service: read from the `meshwork` field of its package.json. */
export interface ServiceManifest {
  /** Short name (`users`): process label, database and role suffix. */
  name: string;
  /** Default port (overridden by `--ports auto`). */
  port: number;
  /** Directory of the service's package. */
  dir: string;
  /** Entry point, relative to `dir`. */
  main: string;
  /** Whether the service owns a database. */
  database: boolean;
  /**
   * `service` (a Meshwork service: health-checked over gRPC) or `gateway` (the edge: started
   * after the services, pointed at them, ready when its admin `/ready` answers) or `legacy` (the
   * REST monolith of the strangler-fig migration: started with the services, ready when its
   * `GET /healthz` answers; the gateway gets its URL).
   */
  kind: "service" | "gateway" | "legacy";
  /** The gateway's admin port (overridden by `--ports auto`). */
  adminPort?: number;
  /** Services whose event streams it consumes (its NATS user may read them); absent: the built-in table. */
  consumes?: string[];
  /**
   * Node options the service is deployed with (the gateway's `--max-semi-space-size`): put in
   * front of `NODE_OPTIONS`, as the image's CMD does, so the environment's own still win.
   */
  nodeOptions?: string;
}

/**
 * Finds every service of the repository: each `apps/<name>/package.json` with a `meshwork`
 * field. A new service is picked up by `meshctl up` as soon as it declares one.
 */
export function findServices(root: string): ServiceManifest[] {
  const apps = join(root, "apps");
  const found: ServiceManifest[] = [];
  for (const entry of readdirSync(apps, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    let pkg: {
      meshwork?: {
        service: string;
        port: number;
        main?: string;
        database?: boolean;
        kind?: "service" | "gateway" | "legacy";
        adminPort?: number;
        consumes?: string[];
        nodeOptions?: string;
      };
    };
    try {
      pkg = JSON.parse(readFileSync(join(apps, entry.name, "package.json"), "utf8"));
    } catch {
      continue;
    }
    if (!pkg.meshwork) continue;
    found.push({
      name: pkg.meshwork.service,
      port: pkg.meshwork.port,
      dir: join(apps, entry.name),
      main: pkg.meshwork.main ?? "dist/main.js",
      database: pkg.meshwork.database ?? false,
      kind: pkg.meshwork.kind ?? "service",
      adminPort: pkg.meshwork.adminPort,
      ...(pkg.meshwork.consumes ? { consumes: pkg.meshwork.consumes } : {}),
      ...(pkg.meshwork.nodeOptions ? { nodeOptions: pkg.meshwork.nodeOptions } : {}),
    });
  }
  return found.sort((a, b) => a.port - b.port);
}
