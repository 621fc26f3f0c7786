import type { RuntimeConfig } from "./config.js";

/**
 * A runtime configuration for services started inside tests and benchmarks: loopback, port 0
 * (the caller reads the bound port from `start()`), no exporters, every trace sampled, short
 * grace and a slow health-check loop. Override what a test needs.
 */
export function testRuntimeConfig(overrides: Partial<RuntimeConfig> = {}): RuntimeConfig {
  return {
    host: "127.0.0.1",
    port: 0,
    logLevel: "silent",
    shutdownGraceMs: 1_000,
    healthCheckIntervalMs: 60_000,
    readMaxBytes: 1024 * 1024,
    tracesExporter: "none",
    otlpEndpoint: undefined,
    sampleRatio: 1,
    ...overrides,
  };
}

export { connectRawH2, FrameType, hpackBlock, type RawH2Client } from "./raw-h2.js";
