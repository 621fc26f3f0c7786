import type { DescFile } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";

/** One route: every method of one service, by its `/<package>.<Service>/` path prefix. */
export interface Route {
  /** `/meshwork.users.v1.UserService/` */
  prefix: string;
  service: string;
  /** The upstream cluster: the service's short name (`users`). */
  cluster: string;
  methods: string[];
  /** Unary methods the contract marks idempotent (NO_SIDE_EFFECTS or IDEMPOTENT): retryable. */
  retryable: Set<string>;
  /** Unary methods without side effects (NO_SIDE_EFFECTS): the only ones Connect GET may call. */
  getAllowed: Set<string>;
}

/** `meshwork.users.v1` -> `users`; other packages keep their full name. */
export function clusterOf(packageName: string): string {
  const m = /^meshwork\.([a-z0-9_]+)\.v\d+$/.exec(packageName);
  return m?.[1] ?? packageName;
}

/** The route table: a route per service of the contract files. */
export function buildRoutes(files: readonly DescFile[]): Route[] {
  const routes: Route[] = [];
  for (const file of files) {
    for (const service of file.services) {
      routes.push({
        prefix: `/${service.typeName}/`,
        service: service.typeName,
        cluster: clusterOf(file.proto.package),
        methods: service.methods.map((m) => m.name),
        retryable: new Set(
          service.methods
            .filter(
              (m) =>
                m.methodKind === "unary" &&
                m.idempotency !== MethodOptions_IdempotencyLevel.IDEMPOTENCY_UNKNOWN,
            )
            .map((m) => m.name),
        ),
        getAllowed: new Set(
          service.methods
            .filter(
              (m) =>
                m.methodKind === "unary" && m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
            )
            .map((m) => m.name),
        ),
      });
    }
  }
  return routes;
}

/** Finds the route of a request path (`/pkg.Service/Method`), or undefined. */
export function matchRoute(table: ReadonlyMap<string, Route>, path: string): Route | undefined {
  const end = path.indexOf("/", 1);
  if (end < 0) return undefined;
  return table.get(path.slice(0, end + 1));
}
