import type { DescMessage } from "@bufbuild/protobuf";
import { createValidator } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";
import { type Accept, compileAccept } from "./validation-accept.js";

/**
 * Validates every request message against the protovalidate rules written in the proto
 * (`buf.validate.field` options) before the handler runs. A violation answers INVALID_ARGUMENT
 * with a message naming the field, plus a `buf.validate.Violations` error detail.
 *
 * A unary request whose type has only plain rules (string uuid / length / simple patterns,
 * number bounds, required messages, list sizes) is first checked by a function compiled once
 * for its type (`compileAccept`): if it passes, protovalidate is not asked; if not, or for any
 * other type, protovalidate decides and answers as it always did. Why: at a service's request
 * rates protovalidate's generic evaluator stays cold in V8 — 50-100 µs per AuthorizePayment
 * request over its first thousands of calls, 1-3 µs when compiled here.
 */
export function createValidationInterceptor(): Interceptor {
  const protovalidate = createValidateInterceptor({ validator: createValidator() });
  const accepts = new Map<DescMessage, Accept | null>();
  const acceptOf = (desc: DescMessage): Accept | null => {
    let accept = accepts.get(desc);
    if (accept === undefined) {
      accept = compileAccept(desc) ?? null;
      accepts.set(desc, accept);
    }
    return accept;
  };
  return (next) => {
    const validated = protovalidate(next);
    return (req) => {
      if (req.stream === false && acceptOf(req.method.input)?.(req.message)) return next(req);
      return validated(req);
    };
  };
}
