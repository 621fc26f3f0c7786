/**
 * A TCP relay in front of Postgres that counts, per database, the round trips its clients make
 * (a `Sync` ends each extended-protocol exchange, a simple `Query` is one) and how often each
 * statement text runs (a `Bind` of a statement that a `Parse` on the same connection named, or
 * a simple query). Postgres here has no `pg_stat_statements` loaded (and the shared server is
 * not restarted for a bench), so the services' DATABASE_URL points at this relay instead: an
 * independent count of what reaches the server, whatever the client library does.
 */
import { createConnection, createServer, type Socket } from "node:net";

export interface WireCounts {
  /** Round trips (Sync + simple Query) by database. */
  roundTrips: Map<string, number>;
  /** Executions by database, then by statement text. */
  statements: Map<string, Map<string, number>>;
}

/** Frontend messages of one connection, parsed as they stream through. */
class FrontendReader {
  private buf: Buffer = Buffer.alloc(0);
  private started = false;
  private database = "?";
  private readonly named = new Map<string, string>();

  constructor(private readonly counts: WireCounts) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    for (;;) {
      if (!this.started) {
        if (this.buf.length < 8) return;
        const len = this.buf.readInt32BE(0);
        if (this.buf.length < len) return;
        const code = this.buf.readInt32BE(4);
        // SSLRequest / GSSENCRequest / CancelRequest: another untyped message may follow.
        if (code === 196608) {
          this.started = true;
          const parts = this.buf.subarray(8, len).toString("utf8").split("\0");
          const i = parts.indexOf("database");
          if (i >= 0) this.database = parts[i + 1] ?? "?";
        }
        this.buf = this.buf.subarray(len);
        continue;
      }
      if (this.buf.length < 5) return;
      const len = this.buf.readInt32BE(1);
      if (this.buf.length < len + 1) return;
      this.message(String.fromCharCode(this.buf[0] ?? 0), this.buf.subarray(5, len + 1));
      this.buf = this.buf.subarray(len + 1);
    }
  }

  private add(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }

  private message(type: string, body: Buffer): void {
    const db = this.database;
    const stmts = this.counts.statements.get(db) ?? new Map<string, number>();
    this.counts.statements.set(db, stmts);
    if (type === "S" || type === "Q") this.add(this.counts.roundTrips, db);
    if (type === "Q") this.add(stmts, body.subarray(0, body.indexOf(0)).toString("utf8"));
    if (type === "P") {
      const nameEnd = body.indexOf(0);
      const textEnd = body.indexOf(0, nameEnd + 1);
      this.named.set(
        body.subarray(0, nameEnd).toString("utf8"),
        body.subarray(nameEnd + 1, textEnd).toString("utf8"),
      );
    }
    if (type === "B") {
      const portalEnd = body.indexOf(0);
      const name = body.subarray(portalEnd + 1, body.indexOf(0, portalEnd + 1)).toString("utf8");
      this.add(stmts, this.named.get(name) ?? `<statement ${name}>`);
    }
  }
}

/** Starts the relay on 127.0.0.1, port 0, in front of `target`; `url(u)` rewrites a database URL to it. */
export async function startWireCounter(target: { host: string; port: number }) {
  const counts: WireCounts = { roundTrips: new Map(), statements: new Map() };
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = createConnection(target);
    sockets.add(client).add(upstream);
    const reader = new FrontendReader(counts);
    client.on("data", (chunk) => {
      reader.push(chunk);
      upstream.write(chunk);
    });
    upstream.pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("close", close).on("error", close);
    upstream.on("close", close).on("error", close);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    counts,
    url(u: string): string {
      const parsed = new URL(u);
      parsed.hostname = "127.0.0.1";
      parsed.port = String(port);
      return parsed.toString();
    },
    /** A copy of the counts now (to subtract a window's start). */
    snapshot(): WireCounts {
      return {
        roundTrips: new Map(counts.roundTrips),
        statements: new Map([...counts.statements].map(([db, m]) => [db, new Map(m)])),
      };
    },
    async close(): Promise<void> {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** What ran between two snapshots, per database: round trips and the statements by count. */
export function wireDelta(before: WireCounts, after: WireCounts) {
  return [...after.roundTrips].map(([db, n]) => {
    const was = before.statements.get(db) ?? new Map<string, number>();
    const statements = [...(after.statements.get(db) ?? new Map<string, number>())]
      .map(([text, k]) => ({ text, n: k - (was.get(text) ?? 0) }))
      .filter((s) => s.n > 0)
      .sort((a, b) => b.n - a.n);
    return { db, roundTrips: n - (before.roundTrips.get(db) ?? 0), statements };
  });
}
