export { createUpstreamPolicy, type UpstreamPolicy, type UpstreamPolicyOptions } from "./policy.js";
