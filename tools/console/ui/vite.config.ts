import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// The console's page: Preact, bundled at build time into ../dist/ui (served by the console
// server; nothing is fetched from a CDN at run time, the console works offline).
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: fileURLToPath(new URL("../dist/ui", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 1500,
  },
});
