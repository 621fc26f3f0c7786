import { Code, ConnectError, type StreamResponse } from "@connectrpc/connect";
import { type Context, context } from "@opentelemetry/api";

/**
 * Returns `res` with a response stream that calls `end` once, when the stream is read to its end
 * (no argument), fails (the error) or is closed early by the reader (CANCELED): the moment a
 * streaming call's span ends. With `ctx`, each read runs in that context, since the stream is read
 * after the interceptor has returned.
 */
export function onStreamEnd<R extends StreamResponse>(
  res: R,
  end: (err?: unknown) => void,
  ctx?: Context,
): R {
  const inner = res.message[Symbol.asyncIterator]();
  let done = false;
  const endOnce = (err?: unknown) => {
    if (done) return;
    done = true;
    end(err);
  };
  const read = ctx ? () => context.with(ctx, () => inner.next()) : () => inner.next();
  const message = {
    [Symbol.asyncIterator]: () => ({
      next: async () => {
        try {
          const r = await read();
          if (r.done) endOnce();
          return r;
        } catch (err) {
          endOnce(err);
          throw err;
        }
      },
      return: async (value?: unknown) => {
        endOnce(new ConnectError("stream closed by the client", Code.Canceled));
        return (await inner.return?.(value)) ?? { done: true as const, value: undefined };
      },
    }),
  };
  return { ...res, message } as R;
}
