import { setTimeout as sleep } from "node:timers/promises";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { createService, type RuntimeConfig, type Service } from "@meshwork/runtime";
import {
  type EchoStatus,
  type Payload,
  PayloadSchema,
  type ResponseParameters,
  type StreamingOutputCallRequest,
  type StreamingOutputCallResponse,
  StreamingOutputCallResponseSchema,
} from "./gen/grpc/testing/messages_pb.js";
import { file_grpc_testing_test, TestService } from "./gen/grpc/testing/test_pb.js";

/** The metadata the interop suite's `custom_metadata` case asks the server to echo. */
const ECHO_INITIAL = "x-grpc-test-echo-initial";
const ECHO_TRAILING = "x-grpc-test-echo-trailing-bin";

/** The suite's payloads are zero bytes of the asked size; a negative size is the client's mistake. */
function payloadOf(size: number): Payload {
  if (size < 0)
    throw new ConnectError(`payload size must not be negative, got ${size}`, Code.InvalidArgument);
  return create(PayloadSchema, { body: new Uint8Array(size) });
}

/** Fails the call with the status the client asked for (`status_code_and_message`). */
function echoStatus(status: EchoStatus | undefined): void {
  if (!status || status.code === 0) return;
  if (status.code < 0 || status.code > 16) {
    throw new ConnectError(`response_status.code ${status.code} is no gRPC status`, Code.InvalidArgument);
  }
  throw new ConnectError(status.message, status.code as Code);
}

/** Echoes the suite's two metadata entries: one as a response header, one as a trailer. */
function echoMetadata(ctx: HandlerContext): void {
  const initial = ctx.requestHeader.get(ECHO_INITIAL);
  if (initial !== null) ctx.responseHeader.set(ECHO_INITIAL, initial);
  const trailing = ctx.requestHeader.get(ECHO_TRAILING);
  if (trailing !== null) ctx.responseTrailer.set(ECHO_TRAILING, trailing);
}

/**
 * `expect_compressed`: the request must have arrived compressed (true) or not (false). The
 * message's compressed flag is not visible to a handler; the call's `grpc-encoding` (or Connect's
 * `content-encoding`) is what sets it, so that is what is checked.
 */
function checkCompressed(expect: boolean | undefined, ctx: HandlerContext): void {
  if (expect === undefined) return;
  const encoding =
    ctx.requestHeader.get("grpc-encoding") ??
    ctx.requestHeader.get("connect-content-encoding") ??
    ctx.requestHeader.get("content-encoding");
  const compressed = encoding !== null && encoding !== "identity";
  if (compressed !== expect) {
    throw new ConnectError(
      expect ? "expected a compressed request, got an uncompressed one" : "expected an uncompressed request",
      Code.InvalidArgument,
    );
  }
}

/** The answers one StreamingOutputCallRequest asks for, each after its interval. */
async function* answersTo(
  req: StreamingOutputCallRequest,
  signal: AbortSignal,
): AsyncGenerator<StreamingOutputCallResponse> {
  echoStatus(req.responseStatus);
  for (const p of req.responseParameters as ResponseParameters[]) {
    if (p.intervalUs > 0) await sleep(p.intervalUs / 1000, undefined, { signal });
    yield create(StreamingOutputCallResponseSchema, { payload: payloadOf(p.size) });
  }
}

/**
 * `grpc.testing.TestService` on the Meshwork runtime (`createService`): the server side of
 * grpc/grpc's interop cases. `UnimplementedMethod` is left out on purpose (the
 * `unimplemented_method` case), and `UnimplementedService` is not served at all.
 */
export function createInteropService(config: RuntimeConfig): Service {
  return createService({
    name: "interop",
    config,
    files: [file_grpc_testing_test],
    services: [TestService],
    routes(router) {
      router.service(TestService, {
        async emptyCall(_req, ctx) {
          echoMetadata(ctx);
          return {};
        },
        async unaryCall(req, ctx) {
          echoMetadata(ctx);
          checkCompressed(req.expectCompressed?.value, ctx);
          echoStatus(req.responseStatus);
          return { payload: payloadOf(req.responseSize) };
        },
        async *streamingOutputCall(req, ctx) {
          echoMetadata(ctx);
          yield* answersTo(req, ctx.signal);
        },
        async streamingInputCall(requests, ctx) {
          echoMetadata(ctx);
          let total = 0;
          for await (const req of requests) {
            checkCompressed(req.expectCompressed?.value, ctx);
            total += req.payload?.body.length ?? 0;
          }
          return { aggregatedPayloadSize: total };
        },
        async *fullDuplexCall(requests, ctx) {
          echoMetadata(ctx);
          for await (const req of requests) yield* answersTo(req, ctx.signal);
        },
        async *halfDuplexCall(requests, ctx) {
          echoMetadata(ctx);
          const all: StreamingOutputCallRequest[] = [];
          for await (const req of requests) all.push(req);
          for (const req of all) yield* answersTo(req, ctx.signal);
        },
      });
    },
  });
}
