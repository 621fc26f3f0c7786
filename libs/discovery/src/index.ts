export {
  type DiscoveryConfig,
  discoveryEnvShape,
  parseUpstreams,
  toDiscoveryConfig,
} from "./config.js";
export { createDiscovery, type Discovery, type DiscoveryObserve, type DiscoverySelf } from "./discovery.js";
export {
  type EndpointState,
  type EndpointTracker,
  type EndpointTrackerOptions,
  trackEndpoints,
} from "./endpoints.js";
export { type HealthState, HealthWatch } from "./health-watch.js";
export {
  DEFAULT_OUTLIER_POLICY,
  isEjected,
  newOutlierState,
  type OutlierPolicy,
  type OutlierState,
  recordFailure,
  recordSuccess,
} from "./outliers.js";
export {
  DEFAULT_BUCKET,
  DEFAULT_TTL_MS,
  type InstanceRecord,
  type Registration,
  type RegistryOptions,
  type RegistryWatcher,
  registerInstance,
  removeRegistry,
  watchRegistry,
} from "./registry.js";
export {
  createRecordSigner,
  createRecordVerifier,
  type RecordSigner,
  type RecordVerifier,
} from "./signing.js";
export {
  type BalancedTransport,
  type BalancedTransportOptions,
  createBalancedTransport,
} from "./transport.js";
