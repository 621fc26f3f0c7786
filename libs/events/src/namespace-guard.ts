/**
 * Whether `env` is a test run's. vitest sets `VITEST=true` in its workers (always) and
 * `NODE_ENV=test` (unless NODE_ENV was set), and a process a test spawns with the test's
 * environment (`{ ...process.env, ... }`, as `@meshwork/testing`'s `startProcess` does) inherits
 * both; either one is taken as "under test". An environment built from nothing has neither.
 */
export function isUnderTest(env: Record<string, string | undefined>): boolean {
  return Boolean(env.VITEST) || env.NODE_ENV === "test";
}

/**
 * A service or `meshctl up` started under test (see {@link isUnderTest}) with the default (empty)
 * `EVENTS_NAMESPACE`: refused, since it would declare the default namespace's streams, consumers
 * and buckets on a NATS server other engineers and tests share.
 */
export class DefaultNamespaceUnderTestError extends Error {
  override name = "DefaultNamespaceUnderTestError";
  constructor(what: string, marker: string) {
    super(
      `${what}: EVENTS_NAMESPACE is empty under test (${marker}): a test's process would use the default namespace's streams and consumers on a shared NATS server. Give it a namespace of its own, ending in '.' (@meshwork/testing's uniqueNamespace() or startService())`,
    );
  }
}

/**
 * Refuses (throws {@link DefaultNamespaceUnderTestError}) to start `what` under test without an
 * `EVENTS_NAMESPACE` of its own. Called with the raw environment, before the configuration is
 * parsed (a parsed one has lost `VITEST` and `NODE_ENV`); outside a test it does nothing.
 */
export function refuseDefaultNamespaceUnderTest(env: Record<string, string | undefined>, what: string): void {
  if (!isUnderTest(env) || env.EVENTS_NAMESPACE) return;
  throw new DefaultNamespaceUnderTestError(
    what,
    env.VITEST ? `VITEST=${env.VITEST}` : `NODE_ENV=${env.NODE_ENV}`,
  );
}
