import { parseEnv, runService, runtimeEnvShape, toRuntimeConfig } from "@meshwork/runtime";
import { createInteropService } from "./fixture.js";

// `npm run serve -w @meshwork/interop`: the interop fixture as a process (PORT, default 50099),
// for running any gRPC interop client against it by hand.
const env = parseEnv(runtimeEnvShape({ port: 50099 }));
await runService(createInteropService(toRuntimeConfig(env)));
