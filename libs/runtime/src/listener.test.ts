import http2 from "node:http2";
import { waitFor } from "@meshwork/testing";
import { describe, expect, it } from "vitest";
import { createListener } from "./listener.js";

describe("listener shutdown", () => {
  it("lets a response that ends as the drain begins reach the client whole, trailers included", async () => {
    let finish: (() => void) | undefined;
    const listener = createListener({
      handler(_req, res) {
        const h2res = res as http2.Http2ServerResponse;
        h2res.writeHead(200, { "content-type": "text/plain" });
        h2res.write("first ");
        // As a streaming handler answers: a message, then (a turn later) the end with trailers.
        finish = () => {
          h2res.write("middle ");
          setImmediate(() => {
            h2res.addTrailers({ "x-done": "yes" });
            h2res.end("last");
          });
        };
      },
    });
    const port = await listener.listen(0, "127.0.0.1");
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const stream = client.request({ ":path": "/", ":method": "GET" });
      let body = "";
      let trailers: http2.IncomingHttpHeaders | undefined;
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        body += chunk;
      });
      stream.on("trailers", (t) => {
        trailers = t;
      });
      const closed = new Promise<number>((resolve) =>
        stream.on("close", () => resolve(stream.rstCode ?? -1)),
      );
      stream.on("error", () => {}); // the reset, if any, is read from rstCode
      await waitFor(() => finish !== undefined && body === "first ", { what: "the first part" });

      // The drain starts, and the call ends right away: the call's last frames must still go out
      // before the connection is cut.
      const closing = listener.close(5_000);
      finish?.();
      await closing;

      expect(await closed).toBe(http2.constants.NGHTTP2_NO_ERROR);
      expect(body).toBe("first middle last");
      expect(trailers?.["x-done"]).toBe("yes");
    } finally {
      client.destroy();
    }
  });
});
