import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is tools/code-shape/src/paths.ts or dist/paths.js). */
export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
