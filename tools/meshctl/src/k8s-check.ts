import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseAllDocuments } from "yaml";

/**
 * What the tests of infra/k8s read from a `kubectl kustomize` build: its objects, and a small
 * evaluator of NetworkPolicy semantics (as a CNI applies them) to ask who may reach whom.
 */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // biome-ignore lint/suspicious/noExplicitAny: manifests are checked field by field in the tests
  spec?: any;
  data?: Record<string, string>;
  [key: string]: unknown;
}

/** Builds an overlay with the real kustomize of kubectl and returns its objects. */
export function kustomize(dir: string, kubectl = process.env.KUBECTL ?? "kubectl"): K8sObject[] {
  const out = execFileSync(kubectl, ["kustomize", dir], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  return parseAllDocuments(out)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

/**
 * Validates each object against the Kubernetes API's JSON schemas (`kubernetes-models`: types,
 * required fields, formats, enums). Returns one line per problem.
 */
export async function validateSchemas(objects: readonly K8sObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const o of objects) {
    let model: new (data: unknown) => { validate(): void };
    try {
      const mod = (await import(`kubernetes-models/${o.apiVersion}/${o.kind}`)) as Record<string, unknown>;
      model = mod[o.kind] as typeof model;
    } catch {
      problems.push(`${o.kind} ${o.metadata?.name}: no schema for ${o.apiVersion} ${o.kind}`);
      continue;
    }
    // kustomize wraps a generated Secret's base64 at 70 columns; the API server's decoder (Go's
    // encoding/base64) skips the newlines, the schema's `byte` format does not.
    const data =
      o.kind === "Secret" && o.data
        ? {
            ...o,
            data: Object.fromEntries(Object.entries(o.data).map(([k, v]) => [k, v.replace(/\n/g, "")])),
          }
        : o;
    try {
      new model(data).validate();
    } catch (err) {
      problems.push(`${o.kind} ${o.metadata?.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return problems;
}

const TYPES_MODULE: Record<string, string> = {
  v1: "core/v1",
};
const typesModule = (apiVersion: string) => {
  if (TYPES_MODULE[apiVersion]) return TYPES_MODULE[apiVersion];
  const [group, version] = apiVersion.split("/") as [string, string];
  return `${group.split(".")[0]}/${version}`;
};

/**
 * The API server's strict field validation, offline: the JSON schemas above accept unknown
 * fields, so each object is also written as an object literal of its `kubernetes-types` type and
 * type-checked; TypeScript's excess-property check then names every unknown or misplaced field
 * (`terminationGracePeriodSecond`, a probe under the pod instead of the container, ...).
 * `cwd` must resolve `kubernetes-types` and `typescript`.
 */
export function checkUnknownFields(objects: readonly K8sObject[], cwd: string): string[] {
  const dir = mkdtempSync(join(cwd, ".k8s-fields-"));
  try {
    const lines: string[] = [];
    const imports = new Map<string, string>();
    objects.forEach((o, i) => {
      const module = typesModule(o.apiVersion);
      if (!imports.has(module)) imports.set(module, `M${imports.size}`);
      lines.push(
        `// ${o.kind} ${o.metadata.name}\nexport const o${i}: ${imports.get(module)}.${o.kind} = ${JSON.stringify(o, null, 1)};`,
      );
    });
    const header = [...imports].map(([m, a]) => `import type * as ${a} from "kubernetes-types/${m}";`);
    writeFileSync(join(dir, "objects.ts"), `${header.join("\n")}\n${lines.join("\n")}\n`);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          module: "preserve",
          moduleResolution: "bundler",
          skipLibCheck: true,
          types: [],
        },
        files: ["objects.ts"],
      }),
    );
    try {
      execFileSync(process.execPath, [require_tsc(cwd), "-p", dir], { encoding: "utf8", cwd: dir });
      return [];
    } catch (err) {
      const out = (err as { stdout?: string }).stdout ?? String(err);
      return out
        .split("\n")
        .filter((l) => /error TS/.test(l))
        .map((l) => l.replace(/^.*objects\.ts/, "objects.ts"));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function require_tsc(cwd: string): string {
  // The workspace's TypeScript (its `tsc` launcher).
  const pkg = execFileSync(
    process.execPath,
    ["-e", "process.stdout.write(require.resolve('typescript/package.json'))"],
    { cwd, encoding: "utf8" },
  );
  return join(dirname(pkg), "bin", "tsc");
}

type Labels = Record<string, string>;
interface Selector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}

/** Whether a label selector selects these labels (`{}` selects everything). */
export function selects(selector: Selector | undefined, labels: Labels): boolean {
  if (!selector) return false;
  for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (labels[k] !== v) return false;
  for (const e of selector.matchExpressions ?? []) {
    const has = e.key in labels;
    const value = labels[e.key];
    if (e.operator === "In" && !(has && e.values?.includes(value as string))) return false;
    if (e.operator === "NotIn" && has && e.values?.includes(value as string)) return false;
    if (e.operator === "Exists" && !has) return false;
    if (e.operator === "DoesNotExist" && has) return false;
  }
  return true;
}

/** A pod of the build: its name (its workload's), labels and declared container ports. */
export interface Pod {
  name: string;
  labels: Labels;
  ports: Array<{ name?: string; port: number }>;
}

/** The pods the Deployments and StatefulSets of a build run (one per workload). */
export function podsOf(objects: readonly K8sObject[]): Pod[] {
  return objects
    .filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet")
    .map((o) => ({
      name: o.metadata.name,
      labels: o.spec.template.metadata.labels as Labels,
      ports: (
        o.spec.template.spec.containers as Array<{ ports?: Array<{ name?: string; containerPort: number }> }>
      )
        .flatMap((c) => c.ports ?? [])
        .map((p) => ({ name: p.name, port: p.containerPort })),
    }));
}

interface Rule {
  from?: Peer[];
  to?: Peer[];
  ports?: Array<{ port?: number | string; protocol?: string }>;
}
interface Peer {
  podSelector?: Selector;
  namespaceSelector?: Selector;
  ipBlock?: unknown;
}

const peerMatches = (peer: Peer, pod: Pod) =>
  // All of the mesh is in one namespace: a pod selector alone (this namespace) or with a
  // namespace selector matches on the pod's labels; an ipBlock never matches a pod of the mesh.
  peer.ipBlock === undefined &&
  (peer.podSelector ? selects(peer.podSelector, pod.labels) : peer.namespaceSelector !== undefined);

function ruleAdmits(
  rule: Rule,
  peers: Peer[] | undefined,
  other: Pod,
  port: { name?: string; port: number },
): boolean {
  const peerOk = peers === undefined || peers.length === 0 || peers.some((p) => peerMatches(p, other));
  const portOk =
    rule.ports === undefined ||
    rule.ports.length === 0 ||
    rule.ports.some(
      (p) =>
        p.port === undefined || p.port === port.port || (port.name !== undefined && p.port === port.name),
    );
  return peerOk && portOk;
}

/**
 * Whether `from` may open a TCP connection to `to` on `port` under these NetworkPolicies: the
 * source's egress and the destination's ingress must both allow it (a pod no policy of a
 * direction selects is open in that direction).
 */
export function allowed(
  policies: readonly K8sObject[],
  from: Pod,
  to: Pod,
  port: { name?: string; port: number },
): boolean {
  const applying = (pod: Pod, type: "Ingress" | "Egress") =>
    policies.filter(
      (p) => (p.spec.policyTypes as string[]).includes(type) && selects(p.spec.podSelector, pod.labels),
    );
  const egress = applying(from, "Egress");
  const egressOk =
    egress.length === 0 ||
    egress.some((p) => ((p.spec.egress ?? []) as Rule[]).some((r) => ruleAdmits(r, r.to, to, port)));
  const ingress = applying(to, "Ingress");
  const ingressOk =
    ingress.length === 0 ||
    ingress.some((p) => ((p.spec.ingress ?? []) as Rule[]).some((r) => ruleAdmits(r, r.from, from, port)));
  return egressOk && ingressOk;
}
