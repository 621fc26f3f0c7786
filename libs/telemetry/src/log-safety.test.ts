import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { errorForLog, exceptionForSpan, scrubText } from "./log-safety.js";
import { createLogger } from "./logger.js";

const HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo";
const JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJlc2ln";

function lines(log: (logger: ReturnType<typeof createLogger>) => void): string {
  let text = "";
  const destination = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  });
  log(createLogger({ service: "t", destination }));
  return text;
}

describe("log safety", () => {
  it("cuts a Drizzle params tail out of messages and stacks, keeping the statement and the frames", () => {
    const text = `Failed query: insert into "users" ("email", "hash") values ($1, $2)\nparams: a@b.c,${HASH}\n    at f (x.js:1:1)`;
    const out = scrubText(text);
    expect(out).toBe(
      `Failed query: insert into "users" ("email", "hash") values ($1, $2)\nparams: [redacted]\n    at f (x.js:1:1)`,
    );
  });

  it("masks hashes, JWTs, bearer credentials and quoted Postgres input values anywhere", () => {
    const out = scrubText(
      `hash ${HASH} token ${JWT} header Bearer abc.def-123 pg: invalid input syntax for type uuid: "hunter22"`,
    );
    expect(out).not.toContain("aGFzaGhhc2hoYXNo");
    expect(out).not.toContain("eyJzdWIiOiJzZWNyZXQifQ");
    expect(out).not.toContain("abc.def-123");
    expect(out).not.toContain("hunter22");
    expect(out).toContain("Bearer [redacted]");
    expect(out).toContain("invalid input syntax for type uuid: [redacted]");
  });

  it("masks the legacy monolith's scrypt hashes (synced to users by the strangler fig)", () => {
    const out = scrubText("apply failed for scrypt$c2FsdHNhbHQ$a2V5a2V5a2V5 (row 3)");
    expect(out).toBe("apply failed for [redacted] (row 3)");
  });

  it("logs an error from an allowlist: no params, parameters or detail, causes kept", () => {
    const cause = Object.assign(new Error('duplicate key value violates unique constraint "u"'), {
      code: "23505",
      constraint_name: "u",
      detail: `Key (hash)=(${HASH}) already exists.`,
    });
    const err = Object.assign(new Error("Failed query: q\nparams: hunter22", { cause }), {
      params: ["hunter22"],
      query: "q",
    });
    const logged = errorForLog(err);
    expect(JSON.stringify(logged)).not.toContain("hunter22");
    expect(JSON.stringify(logged)).not.toContain("c2FsdHNhbHRzYWx0");
    expect(logged).toMatchObject({ type: "Error", cause: { code: "23505", constraint_name: "u" } });
  });

  it("the process logger applies all of it: err, error, stringified errors, messages, secret-named fields", () => {
    const err = Object.assign(new Error(`Failed query: q\nparams: hunter22,${HASH}`), {
      params: ["hunter22"],
    });
    const out = lines((logger) => {
      logger.error({ err }, "unhandled error");
      logger.warn({ error: String(err) }, "as a string");
      logger.warn(`in the message: ${err}`);
      logger.info(
        {
          password: "hunter22",
          user: { passwordHash: HASH, token: JWT },
          headers: { authorization: `Bearer ${JWT}` },
        },
        "fields",
      );
    });
    expect(out.trim().split("\n")).toHaveLength(4);
    for (const secret of ["hunter22", "aGFzaGhhc2hoYXNo", "eyJzdWIiOiJzZWNyZXQifQ"])
      expect(out).not.toContain(secret);
    expect(out).toContain("[redacted]");
  });
});

// Review h19seal2: what a span records of an error leaves the process over OTLP, like a log line.
describe("exceptionForSpan", () => {
  it("keeps an error's name and code, and scrubs its message and stack of statement parameters and hashes", () => {
    const err = Object.assign(
      new TypeError(
        "Failed query: insert into users values ($1, $2)\nparams: ada@example.com,scrypt$c2FsdA$a2V5",
      ),
      { code: "23505", detail: "Key (email)=(ada@example.com) already exists." },
    );
    const out = exceptionForSpan(err);
    expect(out).toMatchObject({
      name: "TypeError",
      code: "23505",
      message: "Failed query: insert into users values ($1, $2)\nparams: [redacted]",
    });
    expect(JSON.stringify(out)).not.toMatch(/ada@example|scrypt\$/);
    expect(exceptionForSpan(`token ${JWT}`)).toEqual({ name: "Error", message: "token [redacted]" });
    expect(exceptionForSpan(42)).toEqual({ name: "Error", message: "non-error value (number)" });
  });
});
