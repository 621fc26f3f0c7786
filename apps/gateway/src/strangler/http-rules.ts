import { type DescFile, type DescMethod, getOption, hasOption } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { http } from "@meshwork/contracts/google/api/annotations";

/** One segment of a path template: a literal, or a variable bound to a (dotted) request field. */
type Segment = { literal: string } | { field: string; rest: boolean };

/**
 * A method's REST mapping, read from its `google.api.http` option (the HttpRule of
 * googleapis/google/api/http.proto), the way Envoy's gRPC-JSON transcoder reads it.
 */
export interface HttpRoute {
  /** The route's name in the cutover table and on the command line: the method's name. */
  name: string;
  verb: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  template: string;
  segments: Segment[];
  /** `*` (the whole request), a field name, or empty (no body: path and query only). */
  body: string;
  /** The response field that is the HTTP body, or empty for the whole response. */
  responseBody: string;
  method: DescMethod;
  /** `/<package>.<Service>/<Method>`: where the transcoded call goes. */
  rpcPath: string;
  /** Whether the method has no side effects (may be shadowed: a shadowed call runs twice). */
  safe: boolean;
}

/** Parses `/api/products/{id}` (variables `{field}`, `{field=*}`, `{field=**}`). */
export function parseTemplate(template: string): Segment[] {
  if (!template.startsWith("/")) throw new Error(`path template ${template}: must start with /`);
  return template
    .slice(1)
    .split("/")
    .map((part) => {
      const m = /^\{([a-z_][a-z0-9_.]*)(?:=(\*\*?))?\}$/i.exec(part);
      if (m) return { field: m[1]!, rest: m[2] === "**" };
      if (/[{}]/.test(part)) throw new Error(`path template ${template}: unsupported segment ${part}`);
      return { literal: part };
    });
}

/** The variables of `path` when it matches the route's template, else undefined. */
export function matchTemplate(segments: readonly Segment[], path: string): Map<string, string> | undefined {
  const parts = path.slice(1).split("/");
  const vars = new Map<string, string>();
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    if ("literal" in seg) {
      if (parts[i] !== seg.literal) return undefined;
      continue;
    }
    if (seg.rest) {
      const rest = parts.slice(i).join("/");
      if (!rest) return undefined;
      vars.set(seg.field, decodeURIComponent(rest));
      return vars;
    }
    const part = parts[i];
    if (part === undefined || part === "") return undefined;
    try {
      vars.set(seg.field, decodeURIComponent(part));
    } catch {
      return undefined;
    }
  }
  return parts.length === segments.length ? vars : undefined;
}

/** Every method of `files` with a `google.api.http` rule, as REST routes. */
export function httpRoutesOf(files: readonly DescFile[]): HttpRoute[] {
  const routes: HttpRoute[] = [];
  for (const file of files) {
    for (const service of file.services) {
      for (const method of service.methods) {
        if (method.methodKind !== "unary" || !hasOption(method, http)) continue;
        const rule = getOption(method, http);
        const { pattern } = rule;
        if (pattern.case === undefined || pattern.case === "custom") continue;
        const verb = pattern.case.toUpperCase() as HttpRoute["verb"];
        routes.push({
          name: method.name,
          verb,
          template: pattern.value,
          segments: parseTemplate(pattern.value),
          body: rule.body,
          responseBody: rule.responseBody,
          method,
          rpcPath: `/${service.typeName}/${method.name}`,
          safe: method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
        });
      }
    }
  }
  return routes;
}

/** The route for a request, or undefined; the second value says whether the path matched another verb. */
export function findHttpRoute(
  routes: readonly HttpRoute[],
  verb: string,
  path: string,
): { route: HttpRoute; vars: Map<string, string> } | undefined {
  for (const route of routes) {
    if (route.verb !== verb) continue;
    const vars = matchTemplate(route.segments, path);
    if (vars) return { route, vars };
  }
  return undefined;
}
