import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { extractApiComments } from "./api-comments.js";

/**
 * Build step (`npm run build`): compiles the repository's contracts with buf, source info kept,
 * and writes their comments to dist/api-comments.json for the explorer. Offline: buf comes from
 * the `@bufbuild/buf` npm package (on the PATH of an npm script).
 */
const root = fileURLToPath(new URL("../../../", import.meta.url));
const out = fileURLToPath(new URL("./api-comments.json", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "mw-api-comments-"));
try {
  const image = join(dir, "contracts.binpb");
  const run = spawnSync("buf", ["build", "--as-file-descriptor-set", "-o", image], {
    cwd: root,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (run.status !== 0) throw new Error(`buf build failed (${run.error?.message ?? `exit ${run.status}`})`);
  const comments = extractApiComments(readFileSync(image));
  writeFileSync(out, `${JSON.stringify(comments, null, 1)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
