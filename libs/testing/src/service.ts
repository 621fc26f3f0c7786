import { uniqueName } from "./postgres.js";
import { type ManagedProcess, type StartOptions, startProcess } from "./process.js";

/**
 * A fresh `EVENTS_NAMESPACE` (`<prefix>_<12 hex>.`): the prefix of every stream, subject, consumer
 * and bucket of one test's services, so tests on the shared NATS server never meet.
 */
export function uniqueNamespace(prefix = "t"): string {
  return `${uniqueName(prefix)}.`;
}

/** A service process started by {@link startService}, with the namespace it was given. */
export interface ServiceProcess extends ManagedProcess {
  /** Its `EVENTS_NAMESPACE` (ends in '.'). */
  namespace: string;
}

/**
 * Starts a service (or `meshctl up`) as {@link startProcess} does, in an `EVENTS_NAMESPACE` of its
 * own: `options.env.EVENTS_NAMESPACE` when given (several processes of one mesh share one),
 * else a fresh {@link uniqueNamespace}. A service or `meshctl up` refuses to start under test
 * with the default (empty) namespace (`refuseDefaultNamespaceUnderTest` in `@meshwork/events`),
 * so an explicit `""` is passed on and refused. Removing the streams it declared is the test's.
 */
export function startService(command: string, args: string[], options: StartOptions = {}): ServiceProcess {
  const namespace = options.env?.EVENTS_NAMESPACE ?? uniqueNamespace();
  const started = startProcess(command, args, {
    ...options,
    env: { ...options.env, EVENTS_NAMESPACE: namespace },
  });
  return Object.assign(started, { namespace });
}
