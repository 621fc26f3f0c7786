import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { meshworkFiles } from "@meshwork/contracts";
import { findServices } from "../services.js";
import { type ServiceSpec, validateServiceSpec } from "./names.js";
import { registrationSteps, replaceFile } from "./register.js";
import { appFiles, protoFiles } from "./templates.js";

export interface NewServiceOptions {
  root: string;
  name: string;
  port?: string;
  publishesEvents?: boolean;
  /** Comma-separated services whose events it consumes. */
  consumesEvents?: string;
  say: (line: string) => void;
}

/** Services that publish events: those with a `meshwork/<name>/v1/events.proto` in the contracts. */
export function eventSources(): string[] {
  return meshworkFiles
    .map((f) => /^meshwork\/([a-z0-9]+)\/v1\/events$/.exec(f.name)?.[1])
    .filter((n): n is string => n !== undefined);
}

type Pkg = {
  name?: string;
  version?: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
};

/** Every workspace package.json of the repository (apps, libs, tools), and the root's. */
function workspacePackages(root: string): { dir: string; pkg: Pkg }[] {
  const out: { dir: string; pkg: Pkg }[] = [
    { dir: "", pkg: JSON.parse(readFileSync(join(root, "package.json"), "utf8")) },
  ];
  for (const group of ["apps", "libs", "tools"]) {
    for (const entry of readdirSync(join(root, group), { withFileTypes: true })) {
      const file = join(root, group, entry.name, "package.json");
      if (entry.isDirectory() && existsSync(file))
        out.push({ dir: `${group}/${entry.name}`, pkg: JSON.parse(readFileSync(file, "utf8")) });
    }
  }
  return out;
}

/**
 * Adds the new workspace to package-lock.json and links it into node_modules, exactly as
 * `npm install` would for a workspace whose dependencies are all installed already (the template
 * uses only dependencies the other services use): offline, and `npm ci` accepts the result.
 */
function linkWorkspace(root: string, dir: string, pkg: Pkg): string[] {
  const lockPath = join(root, "package-lock.json");
  const lock = JSON.parse(readFileSync(lockPath, "utf8")) as { packages: Record<string, unknown> };
  const name = pkg.name as string;
  const packages: Record<string, unknown> = {
    ...lock.packages,
    [dir]: {
      name,
      version: pkg.version,
      dependencies: pkg.dependencies,
      devDependencies: pkg.devDependencies,
    },
    [`node_modules/${name}`]: { resolved: dir, link: true },
  };
  lock.packages = Object.fromEntries(Object.entries(packages).sort(([a], [b]) => a.localeCompare(b, "en")));
  replaceFile(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
  const link = join(root, "node_modules", name);
  mkdirSync(dirname(link), { recursive: true });
  if (!existsSync(link)) symlinkSync(relative(dirname(link), join(root, dir)), link);
  return ["package-lock.json"];
}

function run(root: string, command: string, args: string[], cwd = root): void {
  const r = spawnSync(command, args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, TURBO_TELEMETRY_DISABLED: "1", FORCE_COLOR: "0" },
  });
  if (r.status !== 0) {
    throw new Error(
      `\`${command} ${args.join(" ")}\` failed (exit ${r.status ?? r.signal}):\n${(r.stdout ?? "").slice(-4000)}${(r.stderr ?? "").slice(-4000)}`,
    );
  }
}

/**
 * `meshctl new service <name>`: writes the contract and runs generation, writes apps/<name> in
 * the house layout with its first migration and tests, links the workspace, builds it, and
 * registers it everywhere the mesh lists its services (see `registrationSteps`). Returns the
 * files written.
 */
export function newService(options: NewServiceOptions): { spec: ServiceSpec; written: string[] } {
  const { root, say } = options;
  const spec = validateServiceSpec(root, findServices(root), {
    name: options.name,
    port: options.port,
    publishesEvents: options.publishesEvents,
    consumes: options.consumesEvents,
    eventSources: eventSources(),
  });
  const written: string[] = [];
  const write = (files: Record<string, string>) => {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(root, path)), { recursive: true });
      replaceFile(join(root, path), text);
      written.push(path);
    }
  };

  say(
    `meshctl: new service ${spec.name} (port ${spec.port}${spec.publishesEvents ? ", publishes events" : ""}${spec.consumes.length ? `, consumes ${spec.consumes.join(", ")}` : ""})`,
  );
  write(protoFiles(spec));
  say("  contract written; running buf lint and buf generate (npm run generate)");
  run(root, "npm", ["run", "generate", "--silent"]);
  written.push(`libs/contracts/src/gen/meshwork/${spec.name}/v1/`);

  const packages = workspacePackages(root);
  const versions: Record<string, string> = {};
  const ranges: Record<string, string> = {};
  for (const { pkg } of packages) {
    if (pkg.name?.startsWith("@meshwork/") && pkg.version) versions[pkg.name] = pkg.version;
    for (const deps of [pkg.dependencies, pkg.devDependencies])
      for (const [k, v] of Object.entries(deps ?? {})) if (!k.startsWith("@meshwork/")) ranges[k] ??= v;
  }
  const files = appFiles({ ...spec, versions, ranges });
  write(files);
  const pkg = JSON.parse(files[`apps/${spec.name}/package.json`] as string) as Pkg;
  written.push(...linkWorkspace(root, `apps/${spec.name}`, pkg));

  const meshctl = (args: string[]) =>
    run(root, process.execPath, [join(root, "tools/meshctl/dist/main.js"), ...args]);
  const register = (when: "sources" | "build") => {
    for (const step of registrationSteps.filter((s) => s.after === when)) {
      written.push(...step.apply(root, spec, { meshctl }));
      say(`  registered: ${step.describe(spec)}`);
    }
  };
  register("sources");

  say(`  building @meshwork/${spec.name} and what it depends on (turbo)`);
  run(root, "npx", [
    "turbo",
    "run",
    "build",
    `--filter=@meshwork/${spec.name}...`,
    "--output-logs=errors-only",
  ]);
  say("  first migration (drizzle-kit generate)");
  run(root, "npx", ["drizzle-kit", "generate", "--name", "init"], join(root, "apps", spec.name));
  written.push(`apps/${spec.name}/drizzle/`);
  register("build");
  // The templates are close to the house format; biome makes them exact (and sorts imports).
  run(root, "npx", ["biome", "check", "--write", `apps/${spec.name}`]);
  return { spec, written: [...new Set(written)] };
}
