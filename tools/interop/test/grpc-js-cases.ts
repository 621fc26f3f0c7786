import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

// The client side of grpc/grpc's interop cases (doc/interop-test-descriptions.md), written for
// @grpc/grpc-js with @grpc/proto-loader: grpc-js's framing and protobufjs's serialization, nothing
// of Meshwork's. Each case resolves when it passed and throws naming what differed.

const protoDir = fileURLToPath(new URL("../proto", import.meta.url));
const definition = protoLoader.loadSync(["grpc/testing/test.proto"], {
  includeDirs: [protoDir],
  keepCase: true,
  defaults: true,
  enums: String,
});
const pkg = grpc.loadPackageDefinition(definition) as unknown as {
  grpc: { testing: Record<string, grpc.ServiceClientConstructor> };
};

type Call = (...args: unknown[]) => unknown;
/** A grpc-js client whose methods are looked up by the proto's names (`UnaryCall`). */
export interface Clients {
  test: grpc.Client & Record<string, Call>;
  unimplemented: grpc.Client & Record<string, Call>;
  close(): void;
}

/** Clients of TestService and UnimplementedService at `address` (`host:port`), gzip on when asked. */
export function connect(address: string, options: { gzip?: boolean } = {}): Clients {
  const channelOptions: grpc.ChannelOptions = options.gzip
    ? { "grpc.default_compression_algorithm": grpc.compressionAlgorithms.gzip }
    : {};
  const creds = grpc.credentials.createInsecure();
  const test = new pkg.grpc.testing.TestService!(address, creds, channelOptions) as Clients["test"];
  const unimplemented = new pkg.grpc.testing.UnimplementedService!(
    address,
    creds,
  ) as Clients["unimplemented"];
  return {
    test,
    unimplemented,
    close() {
      test.close();
      unimplemented.close();
    },
  };
}

interface Payload {
  body: Buffer;
}
const zeros = (n: number): Payload => ({ body: Buffer.alloc(n) });
const deadlineIn = (ms: number) => ({ deadline: Date.now() + ms });

function unary<T>(
  client: Record<string, Call>,
  method: string,
  req: unknown,
  metadata = new grpc.Metadata(),
  onMetadata?: (m: grpc.Metadata) => void,
  onStatus?: (s: grpc.StatusObject) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const call = client[method]!(
      req,
      metadata,
      deadlineIn(10_000),
      (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)),
    ) as grpc.ClientUnaryCall;
    if (onMetadata) call.on("metadata", onMetadata);
    if (onStatus) call.on("status", onStatus);
  });
}

/** Resolves with the error a call failed with; throws if it succeeded. */
async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error("the call succeeded; a failure was expected");
}

/** A duplex call as a conversation: write, read the next answer, half-close, read the status. */
function conversation(call: grpc.ClientDuplexStream<unknown, unknown>) {
  const answers: unknown[] = [];
  const waiters: Array<() => void> = [];
  let status: grpc.StatusObject | undefined;
  let error: grpc.ServiceError | undefined;
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };
  call.on("data", (d) => {
    answers.push(d);
    wake();
  });
  call.on("error", (e: grpc.ServiceError) => {
    error = e;
    wake();
  });
  call.on("status", (s: grpc.StatusObject) => {
    status = s;
    wake();
  });
  const until = async (ready: () => boolean) => {
    while (!ready()) await new Promise<void>((r) => waiters.push(r));
  };
  return {
    answers,
    async next(): Promise<unknown> {
      await until(() => answers.length > 0 || status !== undefined || error !== undefined);
      if (answers.length === 0) throw error ?? new Error(`stream ended with status ${status?.code}`);
      return answers.shift();
    },
    async end(): Promise<{ status: grpc.StatusObject; error: grpc.ServiceError | undefined }> {
      await until(() => status !== undefined && (status.code === 0 || error !== undefined));
      return { status: status!, error };
    },
  };
}

const bodyLength = (m: unknown) => (m as { payload?: Payload }).payload?.body.length ?? -1;

const LARGE_REQUEST = 271_828;
const LARGE_RESPONSE = 314_159;
const INPUT_SIZES = [27_182, 8, 1_828, 45_904];
const OUTPUT_SIZES = [31_415, 9, 2_653, 58_979];
const SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n";

async function clientStreaming(c: Clients, sizes: number[], expectCompressed?: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = c.test.StreamingInputCall!(
      new grpc.Metadata(),
      deadlineIn(10_000),
      (err: grpc.ServiceError | null, res: { aggregated_payload_size: number }) =>
        err ? reject(err) : resolve(res.aggregated_payload_size),
    ) as grpc.ClientWritableStream<unknown>;
    for (const n of sizes) {
      call.write({
        payload: zeros(n),
        ...(expectCompressed === undefined ? {} : { expect_compressed: { value: expectCompressed } }),
      });
    }
    call.end();
  });
}

function serverStreaming(c: Clients, params: object[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const got: unknown[] = [];
    const call = c.test.StreamingOutputCall!(
      { response_parameters: params },
      deadlineIn(10_000),
    ) as grpc.ClientReadableStream<unknown>;
    call.on("data", (d) => got.push(d));
    call.on("error", reject);
    call.on("end", () => resolve(got));
  });
}

/** The cases by their names in the interop descriptions. `gz` is a client that compresses (gzip). */
export const grpcJsCases: Record<string, (c: Clients, gz: Clients) => Promise<void>> = {
  async empty_unary(c) {
    assert.deepEqual(await unary(c.test, "EmptyCall", {}), {});
  },

  async large_unary(c) {
    const res = await unary(c.test, "UnaryCall", {
      response_size: LARGE_RESPONSE,
      payload: zeros(LARGE_REQUEST),
    });
    assert.equal(bodyLength(res), LARGE_RESPONSE);
    assert.ok((res as { payload: Payload }).payload.body.every((b) => b === 0));
  },

  async client_compressed_unary(c, gz) {
    // The probe: a request that says it is compressed but is not must be refused.
    const probe = await failure(
      unary(c.test, "UnaryCall", {
        response_size: LARGE_RESPONSE,
        payload: zeros(LARGE_REQUEST),
        expect_compressed: { value: true },
      }),
    );
    assert.equal(probe.code, grpc.status.INVALID_ARGUMENT);
    for (const [client, compressed] of [
      [gz, true],
      [c, false],
    ] as const) {
      const res = await unary(client.test, "UnaryCall", {
        response_size: LARGE_RESPONSE,
        payload: zeros(LARGE_REQUEST),
        expect_compressed: { value: compressed },
      });
      assert.equal(bodyLength(res), LARGE_RESPONSE);
    }
  },

  async server_compressed_unary(c) {
    for (const compressed of [true, false]) {
      const res = await unary(c.test, "UnaryCall", {
        response_size: LARGE_RESPONSE,
        payload: zeros(LARGE_REQUEST),
        response_compressed: { value: compressed },
      });
      assert.equal(bodyLength(res), LARGE_RESPONSE);
    }
  },

  async client_streaming(c) {
    assert.equal(await clientStreaming(c, INPUT_SIZES), 74_922);
  },

  async client_compressed_streaming(c, gz) {
    const probe = await failure(clientStreaming(c, [27_182], true));
    assert.equal(probe.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(await clientStreaming(gz, [27_182, 45_904], true), 73_086);
  },

  async server_streaming(c) {
    const got = await serverStreaming(
      c,
      OUTPUT_SIZES.map((size) => ({ size })),
    );
    assert.deepEqual(got.map(bodyLength), OUTPUT_SIZES);
  },

  async server_compressed_streaming(c) {
    const got = await serverStreaming(c, [
      { size: 31_415, compressed: { value: true } },
      { size: 92_653, compressed: { value: false } },
    ]);
    assert.deepEqual(got.map(bodyLength), [31_415, 92_653]);
  },

  async ping_pong(c) {
    const call = c.test.FullDuplexCall!(deadlineIn(10_000)) as grpc.ClientDuplexStream<unknown, unknown>;
    const talk = conversation(call);
    for (let i = 0; i < INPUT_SIZES.length; i++) {
      call.write({ response_parameters: [{ size: OUTPUT_SIZES[i] }], payload: zeros(INPUT_SIZES[i]!) });
      assert.equal(bodyLength(await talk.next()), OUTPUT_SIZES[i]);
    }
    call.end();
    const { status } = await talk.end();
    assert.equal(status.code, grpc.status.OK);
  },

  async empty_stream(c) {
    const call = c.test.FullDuplexCall!(deadlineIn(10_000)) as grpc.ClientDuplexStream<unknown, unknown>;
    const talk = conversation(call);
    call.end();
    const { status } = await talk.end();
    assert.equal(status.code, grpc.status.OK);
    assert.equal(talk.answers.length, 0);
  },

  async custom_metadata(c) {
    const trailingValue = Buffer.from([0xab, 0xab, 0xab]);
    const metadata = () => {
      const m = new grpc.Metadata();
      m.set("x-grpc-test-echo-initial", "test_initial_metadata_value");
      m.set("x-grpc-test-echo-trailing-bin", trailingValue);
      return m;
    };
    const check = (initial: grpc.Metadata | undefined, trailing: grpc.Metadata | undefined) => {
      assert.deepEqual(initial?.get("x-grpc-test-echo-initial"), ["test_initial_metadata_value"]);
      assert.deepEqual(trailing?.get("x-grpc-test-echo-trailing-bin"), [trailingValue]);
    };
    let initial: grpc.Metadata | undefined;
    let status: grpc.StatusObject | undefined;
    const res = await unary(
      c.test,
      "UnaryCall",
      { response_size: LARGE_RESPONSE, payload: zeros(LARGE_REQUEST) },
      metadata(),
      (m) => {
        initial = m;
      },
      (s) => {
        status = s;
      },
    );
    assert.equal(bodyLength(res), LARGE_RESPONSE);
    // The status event may follow the callback by a tick.
    for (let i = 0; i < 50 && !status; i++) await new Promise((r) => setTimeout(r, 10));
    check(initial, status?.metadata);

    const call = c.test.FullDuplexCall!(metadata(), deadlineIn(10_000)) as grpc.ClientDuplexStream<
      unknown,
      unknown
    >;
    let streamInitial: grpc.Metadata | undefined;
    call.on("metadata", (m) => {
      streamInitial = m;
    });
    const talk = conversation(call);
    call.write({ response_parameters: [{ size: LARGE_RESPONSE }], payload: zeros(LARGE_REQUEST) });
    assert.equal(bodyLength(await talk.next()), LARGE_RESPONSE);
    call.end();
    const end = await talk.end();
    assert.equal(end.status.code, grpc.status.OK);
    check(streamInitial, end.status.metadata);
  },

  async status_code_and_message(c) {
    const responseStatus = { code: 2, message: "test status message" };
    const err = await failure(unary(c.test, "UnaryCall", { response_status: responseStatus }));
    assert.equal(err.code, 2);
    assert.equal(err.details, responseStatus.message);
    const call = c.test.FullDuplexCall!(deadlineIn(10_000)) as grpc.ClientDuplexStream<unknown, unknown>;
    const talk = conversation(call);
    call.write({ response_status: responseStatus });
    call.end();
    const { status } = await talk.end();
    assert.equal(status.code, 2);
    assert.equal(status.details, responseStatus.message);
  },

  async special_status_message(c) {
    const err = await failure(
      unary(c.test, "UnaryCall", { response_status: { code: 2, message: SPECIAL_MESSAGE } }),
    );
    assert.equal(err.code, 2);
    assert.equal(err.details, SPECIAL_MESSAGE);
  },

  async unimplemented_method(c) {
    const err = await failure(unary(c.test, "UnimplementedMethod", {}));
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  },

  async unimplemented_service(c) {
    const err = await failure(unary(c.unimplemented, "UnimplementedCall", {}));
    assert.equal(err.code, grpc.status.UNIMPLEMENTED);
  },

  async cancel_after_begin(c) {
    const err = await failure(
      new Promise((resolve, reject) => {
        const call = c.test.StreamingInputCall!(
          deadlineIn(10_000),
          (e: grpc.ServiceError | null, r: unknown) => (e ? reject(e) : resolve(r)),
        ) as grpc.ClientWritableStream<unknown>;
        call.cancel();
      }),
    );
    assert.equal(err.code, grpc.status.CANCELLED);
  },

  async cancel_after_first_response(c) {
    const call = c.test.FullDuplexCall!(deadlineIn(10_000)) as grpc.ClientDuplexStream<unknown, unknown>;
    const talk = conversation(call);
    call.write({ response_parameters: [{ size: 31_415 }], payload: zeros(27_182) });
    assert.equal(bodyLength(await talk.next()), 31_415);
    call.cancel();
    const { status } = await talk.end();
    assert.equal(status.code, grpc.status.CANCELLED);
  },

  async timeout_on_sleeping_server(c) {
    const call = c.test.FullDuplexCall!(deadlineIn(1)) as grpc.ClientDuplexStream<unknown, unknown>;
    const talk = conversation(call);
    call.write({ payload: zeros(27_182) });
    const { status } = await talk.end();
    assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
  },
};
