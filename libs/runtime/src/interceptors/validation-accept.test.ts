import {
  create,
  createFileRegistry,
  type DescField,
  type DescMessage,
  type Message,
  ScalarType,
  setExtension,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldOptionsSchema,
  FileDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";
import { createValidator } from "@bufbuild/protovalidate";
import {
  FieldRulesSchema,
  field as fieldRulesOf,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { file_meshwork_api_v1_access } from "@meshwork/contracts/meshwork/api/v1/access";
import { file_meshwork_console_v1_console } from "@meshwork/contracts/meshwork/console/v1/console";
import {
  file_meshwork_inventory_v1_inventory,
  ReserveStockRequestSchema,
} from "@meshwork/contracts/meshwork/inventory/v1/inventory";
import { file_meshwork_notifications_v1_notifications } from "@meshwork/contracts/meshwork/notifications/v1/notifications";
import { file_meshwork_orders_v1_orders } from "@meshwork/contracts/meshwork/orders/v1/orders";
import {
  AuthorizePaymentRequestSchema,
  CapturePaymentRequestSchema,
  file_meshwork_payments_v1_payments,
} from "@meshwork/contracts/meshwork/payments/v1/payments";
import { file_meshwork_users_v1_users } from "@meshwork/contracts/meshwork/users/v1/users";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { compileAccept } from "./validation-accept.js";

const inputs = [
  file_meshwork_payments_v1_payments,
  file_meshwork_inventory_v1_inventory,
  file_meshwork_orders_v1_orders,
  file_meshwork_users_v1_users,
  file_meshwork_notifications_v1_notifications,
  file_meshwork_api_v1_access,
  file_meshwork_console_v1_console,
].flatMap((f) => f.services.flatMap((s) => s.methods.map((m) => m.input)));
const unique = [...new Map(inputs.map((d) => [d.typeName, d])).values()];

const UUID = "3f1c2a9e-8b7d-4e6f-9a1b-2c3d4e5f6a7b";
const strings = fc.oneof(
  { arbitrary: fc.constant(UUID), weight: 10 },
  { arbitrary: fc.constant("EUR"), weight: 3 },
  fc.constantFrom(
    UUID,
    UUID.toUpperCase(),
    `${UUID}\n`,
    UUID.slice(1),
    "",
    "EUR",
    "eur",
    "EU",
    "EURO",
    "EU\n",
  ),
  fc.constantFrom("a".repeat(64), "a".repeat(65), "x".repeat(200), "x".repeat(201), "😀".repeat(200), "é"),
  fc.string({ maxLength: 8 }),
  fc.string({ unit: "grapheme", maxLength: 4 }),
);
const int64s = fc.oneof(
  { arbitrary: fc.constantFrom(1n, 2n), weight: 3 },
  fc.constantFrom(-1n, 0n, 1n, 1_000_000n, 1_000_001n, 9007199254740991n, 9007199254740992n),
  fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
);
const numbers = fc.oneof(
  fc.constantFrom(0, 1, -1, 0.5, 1.5, 60_000, 60_001, Number.NaN, Number.POSITIVE_INFINITY),
  fc.integer(),
);

/** Messages of `desc` with boundary-heavy field values (nested messages to `depth`). */
function messageOf(desc: DescMessage, depth = 2): fc.Arbitrary<Message> {
  const fields = desc.fields.filter((f) => !f.oneof);
  const values = fields.map((f) => fieldValue(f, depth));
  return fc.tuple(...values).map((vs) => {
    const init: Record<string, unknown> = {};
    fields.forEach((f, i) => {
      if (vs[i] !== undefined) init[f.localName] = vs[i];
    });
    return create(desc, init as never) as Message;
  });
}

function scalarValue(scalar: ScalarType): fc.Arbitrary<unknown> {
  switch (scalar) {
    case ScalarType.STRING:
      return strings;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64s;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64s.map((v) => (v < 0n ? -v : v));
    case ScalarType.BOOL:
      return fc.boolean();
    case ScalarType.BYTES:
      return fc.uint8Array({ maxLength: 4 });
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return numbers;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return numbers.map((n) => (Number.isInteger(n) ? Math.abs(n) % 2 ** 32 : 0));
    default:
      return numbers.map((n) => (Number.isInteger(n) ? n | 0 : 0));
  }
}

function fieldValue(f: DescField, depth: number): fc.Arbitrary<unknown> {
  switch (f.fieldKind) {
    case "scalar":
      return fc.option(scalarValue(f.scalar), { nil: undefined });
    case "enum":
      return fc.constantFrom(0, 1, 2);
    case "message":
      return depth > 0
        ? fc.option(messageOf(f.message, depth - 1), { nil: undefined })
        : fc.constant(undefined);
    case "list": {
      const item =
        f.listKind === "message"
          ? depth > 0
            ? messageOf(f.message, depth - 1)
            : undefined
          : f.listKind === "scalar"
            ? scalarValue(f.scalar)
            : fc.constantFrom(0, 1);
      if (!item) return fc.constant([]);
      return fc.oneof(
        { arbitrary: fc.array(item, { minLength: 1, maxLength: 2 }), weight: 3 },
        fc.constant([]),
        item.chain((i) => fc.constantFrom(100, 101).map((n) => Array.from({ length: n }, () => i))),
      );
    }
    case "map":
      return fc.constant(undefined);
  }
}

describe("compileAccept", () => {
  const validator = createValidator();

  it("compiles the order path's requests (AuthorizePayment, CapturePayment, ReserveStock)", () => {
    for (const d of [AuthorizePaymentRequestSchema, CapturePaymentRequestSchema, ReserveStockRequestSchema])
      expect(compileAccept(d), d.typeName).toBeDefined();
    const ok = create(AuthorizePaymentRequestSchema, {
      paymentId: UUID,
      userId: UUID,
      amount: { amountMinor: 100n, currency: "EUR" },
    });
    expect(compileAccept(AuthorizePaymentRequestSchema)?.(ok)).toBe(true);
    expect(
      compileAccept(AuthorizePaymentRequestSchema)?.(
        create(AuthorizePaymentRequestSchema, { ...ok, amount: undefined }),
      ),
    ).toBe(false);
    // Another type's message is never accepted.
    expect(compileAccept(CapturePaymentRequestSchema)?.(ok)).toBe(false);
  });

  it.each(unique.map((d) => [d.typeName, d] as const))(
    "answers as protovalidate does for %s",
    (_name, desc) => {
      const accept = compileAccept(desc);
      if (!accept) return; // left to protovalidate
      let accepted = 0;
      fc.assert(
        fc.property(messageOf(desc), (m) => {
          const valid = validator.validate(desc, m).kind === "valid";
          // Never a yes protovalidate would refuse; and no needless no on these rules either.
          expect(accept(m)).toBe(valid);
          if (valid) accepted++;
        }),
        { numRuns: 500 },
      );
      // The runs reached the accepting side too (not only refusals).
      expect(accepted).toBeGreaterThan(0);
    },
  );

  it("checks a message held in a oneof (its value is the oneof's, not a property of the message)", () => {
    // message Inner { string id = 1 [(buf.validate.field).string.uuid = true]; }
    // message Outer { oneof choice { Inner inner = 1; string other = 2; } }
    const uuidRule = create(FieldOptionsSchema);
    setExtension(
      uuidRule,
      fieldRulesOf,
      create(FieldRulesSchema, {
        type: { case: "string", value: { wellKnown: { case: "uuid", value: true } } },
      }),
    );
    const LABEL_OPTIONAL = FieldDescriptorProto_Label.OPTIONAL;
    const TYPE_STRING = FieldDescriptorProto_Type.STRING;
    const TYPE_MESSAGE = FieldDescriptorProto_Type.MESSAGE;
    const file = create(FileDescriptorProtoSchema, {
      name: "oneof_test.proto",
      package: "oneoftest",
      syntax: "proto3",
      messageType: [
        {
          name: "Inner",
          field: [
            {
              name: "id",
              jsonName: "id",
              number: 1,
              label: LABEL_OPTIONAL,
              type: TYPE_STRING,
              options: uuidRule,
            },
          ],
        },
        {
          name: "Outer",
          oneofDecl: [{ name: "choice" }],
          field: [
            {
              name: "inner",
              jsonName: "inner",
              number: 1,
              label: LABEL_OPTIONAL,
              type: TYPE_MESSAGE,
              typeName: ".oneoftest.Inner",
              oneofIndex: 0,
            },
            {
              name: "other",
              jsonName: "other",
              number: 2,
              label: LABEL_OPTIONAL,
              type: TYPE_STRING,
              oneofIndex: 0,
            },
          ],
        },
      ],
    });
    const outer = createFileRegistry(file, () => undefined).getMessage("oneoftest.Outer") as DescMessage;
    const accept = compileAccept(outer);
    expect(accept).toBeDefined();
    for (const [choice, valid] of [
      [{ case: "inner", value: { id: "not-a-uuid" } }, false],
      [{ case: "inner", value: { id: UUID } }, true],
      [{ case: "other", value: "not-a-uuid" }, true],
      [{ case: undefined }, true],
    ] as const) {
      const m = create(outer, { choice } as never) as Message;
      expect(validator.validate(outer, m).kind === "valid", `protovalidate ${JSON.stringify(choice)}`).toBe(
        valid,
      );
      expect(accept?.(m), JSON.stringify(choice)).toBe(valid);
    }
  });

  it("leaves a pattern's count with a leading zero to protovalidate (RE2 reads `{02}` as text)", () => {
    const pattern = (p: string) => {
      const options = create(FieldOptionsSchema);
      setExtension(
        options,
        fieldRulesOf,
        create(FieldRulesSchema, { type: { case: "string", value: { pattern: p } } }),
      );
      const file = create(FileDescriptorProtoSchema, {
        name: `pattern_test_${p.length}.proto`,
        package: "patterntest",
        syntax: "proto3",
        messageType: [
          {
            name: "Code",
            field: [
              {
                name: "code",
                jsonName: "code",
                number: 1,
                label: FieldDescriptorProto_Label.OPTIONAL,
                type: FieldDescriptorProto_Type.STRING,
                options,
              },
            ],
          },
        ],
      });
      return createFileRegistry(file, () => undefined).getMessage("patterntest.Code") as DescMessage;
    };
    const leadingZero = pattern("^[a-z]{02}$");
    const ab = create(leadingZero, { code: "ab" } as never) as Message;
    expect(validator.validate(leadingZero, ab).kind).toBe("invalid");
    expect(compileAccept(leadingZero)).toBeUndefined();
    // The same count without the zero is compiled, and answers as protovalidate.
    const plain = pattern("^[a-z]{2}$");
    const ok = create(plain, { code: "ab" } as never) as Message;
    expect(validator.validate(plain, ok).kind).toBe("valid");
    expect(compileAccept(plain)?.(ok)).toBe(true);
  });
});
