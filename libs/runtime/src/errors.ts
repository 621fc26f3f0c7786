/**
 * Wraps handler work so a service's domain errors leave as status codes: `toConnectError` is the
 * one place where a service maps its errors (ConnectErrors for the ones it knows, anything else
 * unchanged, which the runtime's error interceptor turns into INTERNAL without detail).
 *
 * `const mapped = mapErrors(toConnectError); ... getUser: (req) => mapped(async () => ...)`
 */
export function mapErrors(toConnectError: (err: unknown) => unknown) {
  return async <T>(work: () => Promise<T>): Promise<T> => {
    try {
      return await work();
    } catch (err) {
      throw toConnectError(err);
    }
  };
}
