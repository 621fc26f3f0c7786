import { createValidator } from "@bufbuild/protovalidate";
import type { Interceptor } from "@connectrpc/connect";
import { createValidateInterceptor } from "@connectrpc/validate";

/**
 * Validates every request message against the protovalidate rules written in the proto
 * (`buf.validate.field` options) before the handler runs. A violation answers INVALID_ARGUMENT
 * with a message naming the field, plus a `buf.validate.Violations` error detail.
 */
export function createValidationInterceptor(): Interceptor {
  return createValidateInterceptor({ validator: createValidator() });
}
