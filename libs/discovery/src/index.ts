export {
  DEFAULT_BUCKET,
  DEFAULT_TTL_MS,
  type InstanceRecord,
  type Registration,
  type RegistryOptions,
  type RegistryWatcher,
  registerInstance,
  watchRegistry,
} from "./registry.js";
