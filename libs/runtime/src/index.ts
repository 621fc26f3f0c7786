/**
 * `@meshwork/runtime`: what a Meshwork service is built with (createService, configuration,
 * health, reflection, interceptors, client transports). Transport internals (HTTP/2 stream
 * tables, the guarded session manager, heap tuning) live in `@meshwork/runtime/internal`, which
 * is not a stable API.
 *
 * @packageDocumentation
 */
export {
  type ClientProtocol,
  type ClientTransportOptions,
  createClientTransport,
  DEFAULT_CLIENT_PROTOCOL,
} from "./client.js";
export {
  ConfigError,
  parseEnv,
  type RuntimeConfig,
  runtimeEnvShape,
  telemetryOptions,
  toRuntimeConfig,
} from "./config.js";
export { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "./connection-limits.js";
export { mapErrors } from "./errors.js";
export { createLeanGrpcTransport, type LeanGrpcTransportOptions } from "./grpc-client.js";
export { HealthRegistry, registerHealthService, ServingStatus } from "./health.js";
export {
  ASSERTION_HEADER,
  ASSERTION_LIFETIME_S,
  AssertionError,
  type AssertionSigner,
  type AssertionVerifier,
  type Caller,
  type Claims,
  createAssertionSigner,
  createAssertionVerifier,
} from "./identity/assertion.js";
export {
  type IdentityConfig,
  identityEnvShape,
  parseTrust,
  toIdentityConfig,
} from "./identity/config.js";
export { createCallerInterceptor, createServiceIdentity, type ServiceIdentity } from "./identity/index.js";
export {
  callerKey,
  callerOf,
  createIdentityInterceptor,
  IdentityHeaders,
  requireCaller,
} from "./identity/interceptor.js";
export {
  generateIdentityKey,
  type IdentityKeyPair,
  privateKeyFrom,
  publicKeyFrom,
  publicKeyText,
} from "./identity/keys.js";
export { createDeadlineInterceptor } from "./interceptors/deadline.js";
export { createErrorInterceptor } from "./interceptors/errors.js";
export { createReadinessInterceptor } from "./interceptors/readiness.js";
export {
  codeName,
  createTelemetryInterceptor,
  type TelemetryInterceptorOptions,
} from "./interceptors/telemetry.js";
export { createValidationInterceptor } from "./interceptors/validation.js";
export {
  createListener,
  type Http2StreamHandler,
  type Listener,
  type ListenerOptions,
  type NodeRequestHandler,
} from "./listener.js";
export { registerReflectionServices } from "./reflection.js";
export {
  createService,
  type HttpRoute,
  type ReadinessCheck,
  runService,
  type Service,
  type ServiceOptions,
} from "./service.js";
export {
  BUILD_COMMIT_VAR,
  type BuildInfo,
  buildCommit,
  observeBuildInfo,
  packageVersion,
  versionWithCommit,
} from "./version.js";
