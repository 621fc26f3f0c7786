import http2 from "node:http2";
import { create, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { meshworkFiles } from "@meshwork/contracts";
import { RegisterUserRequestSchema, UserService } from "@meshwork/contracts/meshwork/users/v1/users";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ids, startUsersUpstream, testGatewayConfig, type UsersUpstream } from "../test/users-upstream.js";
import { createGateway, type Gateway } from "./gateway.js";

/** Every method open: these tests are about the request method, not access policies. */
const openPolicies = new Map(
  meshworkFiles.flatMap((f) =>
    f.services.flatMap((s) =>
      s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const]),
    ),
  ),
);

/** A raw HTTP/2 GET: status, headers, body. */
async function h2Get(
  url: string,
  path: string,
): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  const session = http2.connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const stream = session.request({ ":method": "GET", ":path": path });
      let body = "";
      let headers: http2.IncomingHttpHeaders = {};
      stream.setEncoding("utf8");
      stream.on("response", (h) => {
        headers = h;
      });
      stream.on("data", (c: string) => {
        body += c;
      });
      stream.on("end", () => resolve({ status: Number(headers[":status"]), headers, body }));
      stream.on("error", reject);
    });
  } finally {
    session.close();
  }
}

describe("Connect GET through the gateway (issue 25.6)", () => {
  let upstream: UsersUpstream;
  let gateway: Gateway;
  let url: string;

  beforeAll(async () => {
    upstream = await startUsersUpstream();
    gateway = createGateway({ config: testGatewayConfig(upstream.url), policies: openPolicies });
    ({ url } = await gateway.start());
  });
  afterAll(async () => {
    await gateway?.stop();
    await upstream?.service.shutdown();
  });

  for (const httpVersion of ["1.1", "2"] as const) {
    for (const useBinaryFormat of [false, true]) {
      const encoding = useBinaryFormat ? "proto" : "json";
      it(`calls a NO_SIDE_EFFECTS method with GET over HTTP/${httpVersion}, ${encoding} encoding`, async () => {
        const users = createClient(
          UserService,
          createConnectTransport({ baseUrl: url, httpVersion, useBinaryFormat, useHttpGet: true }),
        );
        const before = upstream.methods.length;
        const res = await users.getUser({ id: Ids.ok });
        expect(res.user?.id).toBe(Ids.ok);
        // It went upstream as a GET (not turned into a POST on the way).
        expect(upstream.methods.slice(before)).toEqual(["GET"]);
        // A second one on the same connection: nothing left broken behind the first.
        const missing = await users.getUser({ id: "0b9a4a7e-8a43-4a55-9d2b-3f1f0c7d2a99" }).catch((e) => e);
        expect(ConnectError.from(missing).code).toBe(Code.NotFound);
      });
    }
  }

  it("refuses a GET to a method with side effects with HTTP 405 and allow: POST, on both protocols", async () => {
    const message = encodeURIComponent(
      toJsonString(
        RegisterUserRequestSchema,
        create(RegisterUserRequestSchema, {
          email: "a@example.com",
          password: "long enough",
          displayName: "A",
        }),
      ),
    );
    const path = `/meshwork.users.v1.UserService/RegisterUser?connect=v1&encoding=json&message=${message}`;
    const before = upstream.methods.length;

    const h1 = await fetch(`${url}${path}`);
    expect(h1.status).toBe(405);
    expect(h1.headers.get("allow")).toBe("POST");
    expect(await h1.json()).toMatchObject({
      code: "unimplemented",
      message: expect.stringContaining("side effects"),
    });

    const bytes = Buffer.from(
      toBinary(RegisterUserRequestSchema, create(RegisterUserRequestSchema, { email: "a@example.com" })),
    ).toString("base64url");
    const h2 = await h2Get(
      url,
      `/meshwork.users.v1.UserService/RegisterUser?connect=v1&encoding=proto&base64=1&message=${bytes}`,
    );
    expect(h2.status).toBe(405);
    expect(h2.headers.allow).toBe("POST");
    expect(JSON.parse(h2.body)).toMatchObject({ code: "unimplemented" });
    // Refused at the edge: nothing reached the service.
    expect(upstream.methods.length).toBe(before);
  });
});
