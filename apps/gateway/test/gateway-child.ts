/**
 * The gateway in a process of its own, for tests that measure its memory under attack: configured
 * from the environment as in production (`loadConfig`), endpoints from `UPSTREAMS` without
 * health checks, every method open. Prints `{"msg":"child ready","port":N,"adminUrl":"..."}`, then its memory as
 * `{"msg":"mem","rss":N,"heapUsed":N}` every 100 ms; stops on SIGTERM.
 */
import { meshworkFiles } from "@meshwork/contracts";
import { loadConfig } from "../src/config.js";
import { createGateway } from "../src/gateway.js";

const config = { ...loadConfig(process.env), discovery: undefined };
const policies = new Map(
  meshworkFiles.flatMap((f) =>
    f.services.flatMap((s) =>
      s.methods.map((m) => [`/${s.typeName}/${m.name}`, { kind: "public" } as const]),
    ),
  ),
);
const gateway = createGateway({ config, policies });
const { port, adminUrl } = await gateway.start();
console.log(JSON.stringify({ msg: "child ready", port, adminUrl }));
const timer = setInterval(() => {
  const m = process.memoryUsage();
  console.log(JSON.stringify({ msg: "mem", rss: m.rss, heapUsed: m.heapUsed }));
}, 100);
process.once("SIGTERM", () => {
  clearInterval(timer);
  gateway.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
