import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@meshwork/contracts/grpc/health/v1/health";
import {
  type GetResilienceResponse,
  GetResilienceResponseSchema,
  type Instance,
  InstanceSchema,
  type ListInstancesResponse,
  ListInstancesResponseSchema,
} from "@meshwork/contracts/meshwork/console/v1/console";
import { type InstanceRecord, type RegistryWatcher, watchRegistry } from "@meshwork/discovery";
import {
  connectNats,
  listDeadLetters,
  type NatsCredentials,
  replayDeadLetter,
  streamName,
} from "@meshwork/events";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { breakerStates, consumerBacklog, outboxBacklog, redFigures, type Sample, scrape } from "./metrics.js";

/** A process the local supervisor (`meshctl up`) runs, as the console sees it. */
export interface SupervisedProcess {
  name: string;
  /** running, starting, backing-off, given-up, stopping, stopped. */
  state: string;
  restarts: number;
  /** `host:port` it serves on, once known. */
  address?: string;
  /** The gateway's admin listener (`host:port`): its health and metrics are there. */
  admin?: string;
}

/**
 * What `meshctl up` lends the console: the processes it supervises, and stopping or restarting
 * one. A console run on its own (`meshctl console`) has none.
 */
export interface ProcessControl {
  list(): SupervisedProcess[];
  stop(name: string): void;
  restart(name: string): void;
}

export interface MeshOptions {
  natsUrl: string;
  natsCredentials?: NatsCredentials;
  /** The registry's KV bucket. */
  registryBucket: string;
  /** EVENTS_NAMESPACE of the mesh (prefixes stream names). */
  namespace: string;
  processes?: ProcessControl;
}

type Nats = Awaited<ReturnType<typeof connectNats>>;

/** `SERVING`, `NOT_SERVING`, ... or `UNREACHABLE`. */
async function health(address: string): Promise<string> {
  const client = createClient(
    Health,
    createConnectTransport({ baseUrl: `http://${address}`, httpVersion: "1.1", useBinaryFormat: true }),
  );
  try {
    return (
      HealthCheckResponse_ServingStatus[(await client.check({ service: "" }, { timeoutMs: 1_500 })).status] ??
      "UNKNOWN"
    );
  } catch {
    return "UNREACHABLE";
  }
}

async function gatewayHealth(admin: string): Promise<string> {
  try {
    const res = await fetch(`http://${admin}/ready`, { signal: AbortSignal.timeout(1_500) });
    return res.status === 200 ? "SERVING" : "NOT_SERVING";
  } catch {
    return "UNREACHABLE";
  }
}

/**
 * The console's view of the running mesh: the registry (followed through one NATS connection,
 * opened on first use and again after a failure), the supervised processes, each instance's
 * health and metrics, and the dead-letter streams. Nothing here fails as a whole because one part
 * is down: what did not answer is named in `problems`.
 */
export class MeshView {
  #nats: Promise<{ nc: Nats; watcher: RegistryWatcher }> | undefined;

  constructor(readonly options: MeshOptions) {}

  async #connect(): Promise<{ nc: Nats; watcher: RegistryWatcher }> {
    this.#nats ??= (async () => {
      const nc = await connectNats(this.options.natsUrl, "meshwork-console", this.options.natsCredentials);
      try {
        const watcher = await watchRegistry({ nc, bucket: this.options.registryBucket });
        await watcher.ready;
        return { nc, watcher };
      } catch (err) {
        await nc.close();
        throw err;
      }
    })();
    try {
      return await this.#nats;
    } catch (err) {
      this.#nats = undefined;
      throw new Error(`NATS at ${this.options.natsUrl} does not answer (${(err as Error).message})`);
    }
  }

  /** The processes' and registry's instances with their health and RED figures. */
  async instances(): Promise<ListInstancesResponse> {
    const problems: string[] = [];
    let records: InstanceRecord[] = [];
    try {
      records = (await this.#connect()).watcher.all();
    } catch (err) {
      problems.push(`registry: ${(err as Error).message}`);
    }
    const supervised = this.options.processes?.list() ?? [];
    const byName = new Map(supervised.map((p) => [p.name, p]));
    const rows: Array<{ record?: InstanceRecord; process?: SupervisedProcess }> = records.map((record) => ({
      record,
      process: byName.get(record.service),
    }));
    // Supervised processes that are not in the registry: the gateway, and a service that is down.
    for (const p of supervised) if (!records.some((r) => r.service === p.name)) rows.push({ process: p });
    const instances = await Promise.all(
      rows.map(async ({ record, process }): Promise<Instance> => {
        const name = record?.service ?? process?.name ?? "?";
        const address = record?.address ?? process?.address ?? "";
        const down = process && process.state !== "running" && process.state !== "starting";
        const metricsAt = process?.admin
          ? `${process.admin}/stats/prometheus`
          : address
            ? `${address}/metrics`
            : "";
        const [state, samples] = await Promise.all([
          down || !address
            ? Promise.resolve(down ? "DOWN" : "UNKNOWN")
            : process?.admin
              ? gatewayHealth(process.admin)
              : health(address),
          down || !metricsAt
            ? Promise.resolve([] as Sample[])
            : scrapePath(metricsAt).catch(() => [] as Sample[]),
        ]);
        if (state === "UNREACHABLE" || state === "DOWN")
          problems.push(`${name} at ${address || "?"} is ${state.toLowerCase()}`);
        const red = redFigures(samples);
        return create(InstanceSchema, {
          service: name,
          instanceId: record?.instanceId ?? "",
          address,
          version: record?.version ?? "",
          startedAt: record ? timestampFromMs(record.startedAt) : undefined,
          health: state,
          red: {
            requests: BigInt(red.requests),
            errors: BigInt(red.errors),
            meanMs: red.meanMs,
            methods: red.methods.map((m) => ({
              method: m.method,
              requests: BigInt(m.requests),
              errors: BigInt(m.errors),
            })),
          },
          processState: process?.state ?? "",
          restarts: process?.restarts ?? 0,
          controllable: Boolean(process && this.options.processes),
        });
      }),
    );
    instances.sort((a, b) => a.service.localeCompare(b.service) || a.address.localeCompare(b.address));
    return create(ListInstancesResponseSchema, { instances, problems });
  }

  /** Stops or restarts a supervised process. */
  control(service: string, action: "stop" | "restart"): string {
    const control = this.options.processes;
    if (!control) {
      throw new ConnectError(
        "this console runs without a supervisor (meshctl console against a mesh it did not start): stop and restart need the console of `meshctl up`",
        Code.FailedPrecondition,
      );
    }
    if (!control.list().some((p) => p.name === service)) {
      throw new ConnectError(`service: no process named "${service}" is supervised here`, Code.NotFound);
    }
    if (action === "stop") control.stop(service);
    else control.restart(service);
    return control.list().find((p) => p.name === service)?.state ?? "";
  }

  /** The dead-letter streams of the namespace (`DLQ_<SERVICE>`). */
  async #dlqStreams(jsm: Awaited<ReturnType<typeof jetstreamManager>>): Promise<string[]> {
    const prefix = streamName(this.options.namespace, "DLQ_");
    const names: string[] = [];
    for await (const s of jsm.streams.list()) if (s.config.name.startsWith(prefix)) names.push(s.config.name);
    return names.sort();
  }

  /** Breakers, outboxes and consumers from each instance's metrics; dead letters from JetStream. */
  async resilience(): Promise<GetResilienceResponse> {
    const problems: string[] = [];
    const out = create(GetResilienceResponseSchema, {});
    let records: InstanceRecord[] = [];
    let nc: Nats | undefined;
    try {
      const c = await this.#connect();
      records = c.watcher.all();
      nc = c.nc;
    } catch (err) {
      problems.push(`registry: ${(err as Error).message}`);
    }
    const addresses = new Map<string, string>();
    for (const r of records) addresses.set(r.address, r.service);
    for (const p of this.options.processes?.list() ?? [])
      if (p.address && !p.admin && p.state === "running" && ![...addresses.values()].includes(p.name))
        addresses.set(p.address, p.name);
    await Promise.all(
      [...addresses.entries()].map(async ([address, service]) => {
        let samples: Sample[];
        try {
          samples = await scrape(address);
        } catch (err) {
          problems.push(`${service}: ${(err as Error).message}`);
          return;
        }
        for (const b of breakerStates(samples))
          out.breakers.push({ $typeName: "meshwork.console.v1.Breaker", caller: service, ...b });
        const ob = outboxBacklog(samples);
        if (ob)
          out.outboxes.push({
            $typeName: "meshwork.console.v1.Outbox",
            service,
            backlog: BigInt(ob.backlog),
            oldestAgeSeconds: ob.oldestAgeSeconds,
          });
        for (const c of consumerBacklog(samples))
          out.consumers.push({
            $typeName: "meshwork.console.v1.ConsumerBacklog",
            service,
            consumer: c.consumer,
            pending: BigInt(c.pending),
            ackPending: BigInt(c.ackPending),
          });
      }),
    );
    out.breakers.sort((a, b) => `${a.caller}/${a.upstream}`.localeCompare(`${b.caller}/${b.upstream}`));
    out.outboxes.sort((a, b) => a.service.localeCompare(b.service));
    const gateway = this.options.processes?.list().find((p) => p.admin);
    if (gateway?.admin) out.ejections = await ejections(gateway.admin).catch(() => []);
    if (nc) {
      try {
        const jsm = await jetstreamManager(nc);
        for (const stream of await this.#dlqStreams(jsm)) {
          for (const l of await listDeadLetters(jsm, stream)) {
            out.deadLetters.push({
              $typeName: "meshwork.console.v1.DeadLetter",
              stream,
              seq: BigInt(l.seq),
              consumer: l.consumer,
              type: l.type,
              eventId: l.eventId,
              deliveries: l.deliveries,
              time: l.time,
              error: l.error,
              originalSubject: l.originalSubject,
            });
          }
        }
      } catch (err) {
        problems.push(`dead letters: ${(err as Error).message}`);
      }
    }
    out.problems = problems;
    return out;
  }

  /** `meshctl events dlq replay`'s replay: publish again on the original subject, then remove. */
  async replay(stream: string, seq: number): Promise<string> {
    if (!stream.startsWith(streamName(this.options.namespace, "DLQ_"))) {
      throw new ConnectError(
        `stream: "${stream}" is not a dead-letter stream of this mesh`,
        Code.InvalidArgument,
      );
    }
    const { nc } = await this.#connect().catch((err: Error) => {
      throw new ConnectError(err.message, Code.Unavailable);
    });
    const jsm = await jetstreamManager(nc);
    const letters = await listDeadLetters(jsm, stream).catch(() => {
      throw new ConnectError(`stream: no dead-letter stream "${stream}"`, Code.NotFound);
    });
    if (!letters.some((l) => l.seq === seq)) {
      throw new ConnectError(`seq: no dead letter ${seq} in ${stream}`, Code.NotFound);
    }
    const l = await replayDeadLetter(jetstream(nc), jsm, stream, seq);
    return l.originalSubject;
  }

  async close(): Promise<void> {
    const n = this.#nats;
    this.#nats = undefined;
    if (!n) return;
    const { nc, watcher } = await n.catch(() => ({ nc: undefined, watcher: undefined }));
    await watcher?.stop();
    await nc?.close();
  }
}

async function scrapePath(url: string): Promise<Sample[]> {
  // `scrape` appends /metrics to an address; the gateway's admin serves /stats/prometheus.
  if (url.endsWith("/metrics")) return scrape(url.slice(0, -"/metrics".length));
  const res = await fetch(`http://${url}`, { signal: AbortSignal.timeout(2_000) });
  const { parsePrometheusText } = await import("./metrics.js");
  return parsePrometheusText(await res.text());
}

/** Ejected endpoints from the gateway admin's `/clusters` (lines mentioning an ejection). */
async function ejections(admin: string): Promise<string[]> {
  const res = await fetch(`http://${admin}/clusters`, { signal: AbortSignal.timeout(2_000) });
  const text = await res.text();
  return text
    .split("\n")
    .filter((l) => /ejected/i.test(l) && !/::false$|ejected::0$|"ejected":\s*false/i.test(l))
    .slice(0, 50);
}
