import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, uniqueName, waitFor } from "@meshwork/testing";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { eventsEnvShape, toEventsConfig } from "./config.js";
import { meshStreams } from "./streams.js";
import { provision } from "./topology.js";

/**
 * STREAM_REPLICAS on a real three-node JetStream cluster (three local nats-server processes
 * routed together, as the NATS StatefulSet of infra/k8s runs them): a stream declared with
 * replicas 3 lives on every node and keeps every acknowledged message when its leader is killed.
 */
const loadEventsConfig = (env: Record<string, string>) => {
  const parsed = z.object(eventsEnvShape()).safeParse(env);
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => i.path.join(".")).join(", "));
  return toEventsConfig(parsed.data);
};

const bin = process.env.MESHWORK_NATS_SERVER ?? "/usr/sbin/nats-server";

interface Node {
  name: string;
  port: number;
  child: ChildProcess;
}

describe("streams replicated on a 3-node JetStream cluster (real nats-server processes)", () => {
  const dir = mkdtempSync(join(tmpdir(), "mw-nats-cluster-"));
  const cluster = uniqueName("mw");
  let nodes: Node[] = [];
  let nc: NatsConnection | undefined;

  beforeAll(async () => {
    const ports = await Promise.all(
      [0, 1, 2].map(async () => ({ client: await freePort(), route: await freePort() })),
    );
    const routes = ports.map((p) => `nats://127.0.0.1:${p.route}`).join(",");
    nodes = ports.map((p, i) => {
      const name = `${cluster}-${i}`;
      const child = spawn(
        bin,
        [
          ...["-a", "127.0.0.1", "-p", String(p.client), "-js", "-sd", join(dir, name)],
          ...["--server_name", name, "--cluster_name", cluster],
          ...["--cluster", `nats://127.0.0.1:${p.route}`, "--routes", routes],
        ],
        { stdio: "ignore" },
      );
      return { name, port: p.client, child };
    });
    for (const n of nodes) {
      await waitFor(
        () =>
          new Promise<boolean>((resolve) => {
            const s = net.connect(n.port, "127.0.0.1");
            s.once("connect", () => {
              s.destroy();
              resolve(true);
            });
            s.once("error", () => resolve(false));
          }),
        { what: `nats-server ${n.name}` },
      );
    }
    nc = await connect({
      servers: nodes.map((n) => `nats://127.0.0.1:${n.port}`),
      reconnectTimeWait: 100,
      maxReconnectAttempts: -1,
    });
    // The cluster is formed once JetStream answers with a meta leader.
    const jsm = await jetstreamManager(nc, { checkAPI: false });
    await waitFor(
      async () =>
        jsm
          .getAccountInfo()
          .then(() => true)
          .catch(() => false),
      { what: "the JetStream meta leader", timeoutMs: 60_000 },
    );
  }, 120_000);

  afterAll(async () => {
    await nc?.close();
    await Promise.all(
      nodes.map(
        (n) =>
          new Promise<void>((resolve) => {
            if (n.child.exitCode !== null || n.child.signalCode !== null) return resolve();
            n.child.once("exit", () => resolve());
            n.child.kill("SIGTERM");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it("declares the stream with STREAM_REPLICAS copies and loses no acknowledged message when its leader dies", async () => {
    const conn = nc as NatsConnection;
    const config = loadEventsConfig({ STREAM_REPLICAS: "3", EVENTS_NAMESPACE: `${uniqueName("r")}.` });
    expect(config.streamReplicas).toBe(3);
    const stream = meshStreams.orders(config.namespace, { replicas: config.streamReplicas });
    const jsm = await jetstreamManager(conn);
    // On a fresh cluster the first stream can take a moment to find its peers.
    await waitFor(
      async () =>
        provision(jsm, { streams: [stream] })
          .then(() => true)
          .catch(() => false),
      { what: "an R3 stream", timeoutMs: 60_000 },
    );
    const info = await jsm.streams.info(stream.name);
    expect(info.config.num_replicas).toBe(3);
    expect(info.cluster?.replicas?.length).toBe(2);

    const js = jetstream(conn);
    const subject = `${config.namespace}meshwork.orders.placed`;
    for (let i = 0; i < 50; i++) await js.publish(subject, `m${i}`, { msgID: `m${i}` });

    // Kill the stream's leader outright: the acknowledged messages are on the two others.
    const leader = nodes.find((n) => n.name === info.cluster?.leader);
    expect(leader).toBeDefined();
    leader?.child.kill("SIGKILL");
    await waitFor(
      async () => {
        const now = await jsm.streams.info(stream.name).catch(() => undefined);
        return now?.cluster?.leader !== undefined && now.cluster.leader !== leader?.name;
      },
      { what: "a new stream leader", timeoutMs: 60_000 },
    );
    const after = await jsm.streams.info(stream.name);
    expect(after.state.messages).toBe(50);
    // And it still takes writes (a quorum of two), de-duplicating a resent id.
    const ack = await js.publish(subject, "m49", { msgID: "m49" });
    expect(ack.duplicate).toBe(true);
    await js.publish(subject, "m50", { msgID: "m50" });
    expect((await jsm.streams.info(stream.name)).state.messages).toBe(51);
    // No delete: the stream lives on this test's own cluster, whose servers and stores afterAll
    // removes (a delete with a node down waited on the meta leader and timed out in CI).
  }, 180_000);

  it("keeps one copy by default (a single server takes no more)", () => {
    const config = loadEventsConfig({});
    expect(config.streamReplicas).toBe(1);
    expect(meshStreams.orders("", {}).replicas).toBeUndefined();
    expect(() => loadEventsConfig({ STREAM_REPLICAS: "0" })).toThrow(/STREAM_REPLICAS/);
  });
});
