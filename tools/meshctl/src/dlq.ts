import {
  connectNats,
  getDeadLetter,
  listDeadLetters,
  type NatsCredentials,
  replayDeadLetter,
  streamName,
} from "@meshwork/events";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { renderTable } from "./table.js";

export interface DlqOptions {
  natsUrl: string;
  /** meshctl's admin user on a NATS it started. */
  natsCredentials?: NatsCredentials;
  namespace: string;
  /** Limit to one consuming service's dead letters. */
  service?: string;
  /** Limit to the dead letters of one durable consumer (a service may have several). */
  consumer?: string;
  out: NodeJS.WritableStream;
}

/** The dead-letter streams in the namespace (`DLQ_<SERVICE>`), optionally one service's only. */
async function dlqStreams(
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  o: DlqOptions,
): Promise<string[]> {
  if (o.service) return [streamName(o.namespace, `DLQ_${o.service.toUpperCase()}`)];
  const prefix = streamName(o.namespace, "DLQ_");
  const names: string[] = [];
  for await (const s of jsm.streams.list()) if (s.config.name.startsWith(prefix)) names.push(s.config.name);
  return names.sort();
}

/** `meshctl events dlq list`: every dead letter with its error and delivery count. */
export async function dlqList(o: DlqOptions): Promise<number> {
  const nc = await connectNats(o.natsUrl, "meshctl", o.natsCredentials);
  try {
    const jsm = await jetstreamManager(nc);
    const rows: string[][] = [];
    for (const stream of await dlqStreams(jsm, o)) {
      for (const l of await listDeadLetters(jsm, stream, undefined, o.consumer).catch(() => [])) {
        rows.push([
          stream,
          String(l.seq),
          l.consumer,
          l.type,
          l.eventId,
          String(l.deliveries),
          l.time,
          l.error,
        ]);
      }
    }
    o.out.write(
      `${renderTable(["STREAM", "SEQ", "CONSUMER", "TYPE", "EVENT ID", "DELIVERIES", "DEAD SINCE", "ERROR"], rows)}\n`,
    );
    o.out.write(`${rows.length} dead letter(s)\n`);
    return 0;
  } finally {
    await nc.close();
  }
}

/**
 * `meshctl events dlq replay --service S [--consumer C] (SEQ... | --all)`: publish again, then
 * remove. With `--consumer`, only that durable's letters: `--all` takes its letters only, and a
 * named one of another durable is refused before anything is replayed.
 */
export async function dlqReplay(o: DlqOptions & { seqs: number[]; all: boolean }): Promise<number> {
  if (!o.service) {
    o.out.write("replay needs --service <consuming service>\n");
    return 2;
  }
  if (o.all === o.seqs.length > 0) {
    o.out.write("replay takes either dead-letter sequence numbers or --all\n");
    return 2;
  }
  const nc = await connectNats(o.natsUrl, "meshctl", o.natsCredentials);
  try {
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);
    const [stream] = await dlqStreams(jsm, o);
    if (!stream) return 2;
    const seqs = await lettersToReplay(jsm, stream, o);
    if (seqs === undefined) return 2;
    if (seqs.length === 0) {
      o.out.write("nothing to replay\n");
      return o.all ? 0 : 2;
    }
    for (const seq of seqs) {
      const l = await replayDeadLetter(js, jsm, stream, seq);
      o.out.write(`replayed ${stream}#${seq}: ${l.type} ${l.eventId} -> ${l.originalSubject}\n`);
    }
    return 0;
  } finally {
    await nc.close();
  }
}

/**
 * The sequence numbers `replay` takes, or `undefined` (said why) when a named one is not there or
 * is another durable's. A stream that cannot be read fails the command (no quiet "nothing").
 */
async function lettersToReplay(
  jsm: Awaited<ReturnType<typeof jetstreamManager>>,
  stream: string,
  o: DlqOptions & { seqs: number[]; all: boolean },
): Promise<number[] | undefined> {
  if (o.all) return (await listDeadLetters(jsm, stream, undefined, o.consumer)).map((l) => l.seq);
  await jsm.streams.info(stream); // the stream must exist (a mistyped --service fails here)
  for (const seq of o.seqs) {
    const letter = await getDeadLetter(jsm, stream, seq);
    if (!letter) {
      o.out.write(`no dead letter ${seq} in ${stream} (see \`meshctl events dlq list\`)\n`);
      return undefined;
    }
    if (o.consumer !== undefined && letter.consumer !== o.consumer) {
      o.out.write(`dead letter ${seq} in ${stream} is consumer ${letter.consumer}'s, not ${o.consumer}'s\n`);
      return undefined;
    }
  }
  return o.seqs;
}
