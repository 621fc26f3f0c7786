import { Writable } from "node:stream";
import { createGateway, loadConfig as loadGatewayConfig } from "@meshwork/gateway/embedded";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stranglerCommand } from "./strangler.js";

function sink() {
  let text = "";
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream, text: () => text };
}

describe("meshctl strangler (against a real gateway's admin listener)", () => {
  let gateway: ReturnType<typeof createGateway>;
  let admin: string;

  const run = async (...args: string[]) => {
    const out = sink();
    const err = sink();
    const code = await stranglerCommand(args, { admin, out: out.stream, err: err.stream });
    return { code, out: out.text(), err: err.text() };
  };

  beforeAll(async () => {
    gateway = createGateway({
      config: loadGatewayConfig({
        PORT: "0",
        ADMIN_PORT: "0",
        LOG_LEVEL: "silent",
        DISCOVERY: "static",
        JWKS_URL: "http://127.0.0.1:9/.well-known/jwks.json",
        // No monolith needs to answer for the cutover table to change.
        STRANGLER_LEGACY_URL: "http://127.0.0.1:9",
        STRANGLER_ROUTES: "GetProduct=10",
      }),
    });
    ({ adminUrl: admin } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
  });

  it("shows every route, moves one by percent and shadows it, at run time", async () => {
    const status = await run("status");
    expect(status.code).toBe(0);
    expect(status.out).toMatch(/^legacy: http:\/\/127\.0\.0\.1:9\//);
    expect(status.out).toMatch(/GetProduct\s+GET \/api\/products\/\{id\}\s+split\s+10%\s+off/);
    expect(status.out).toMatch(/ListProducts\s+GET \/api\/products\s+legacy\s+0%\s+off/);
    expect(status.out).toMatch(/legacy-only\s+.*legacy only/);

    expect(await run("set", "ListProducts", "40")).toMatchObject({ code: 0 });
    expect(await run("shadow", "ListProducts", "on")).toMatchObject({ code: 0 });
    expect(gateway.strangler.states.get("ListProducts")).toMatchObject({ weight: 40, shadow: true });
    expect((await run("status")).out).toMatch(/ListProducts\s+GET \/api\/products\s+split\s+40%\s+on/);
    expect((await run("diffs", "ListProducts")).out).toMatch(
      /^ListProducts: 0 of 0 shadowed answers differed/,
    );
  });

  it("refuses what it cannot do, with the reason", async () => {
    expect(await run("set", "ListProducts", "101")).toMatchObject({ code: 2 });
    const write = await run("shadow", "PlaceOrder", "on");
    expect(write.code).toBe(1);
    expect(write.err).toMatch(/side effects/);
    expect((await run("set", "Nope", "5")).err).toMatch(/no route Nope/);
    expect((await run("bogus")).code).toBe(2);
    const down = await stranglerCommand(["status"], {
      admin: "http://127.0.0.1:9",
      out: sink().stream,
      err: sink().stream,
    });
    expect(down).toBe(1);
  });
});
