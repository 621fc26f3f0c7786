export { LogStore, type LogStoreOptions, parseLogLine } from "./log-store.js";
export type {
  Attributes,
  AttributeValue,
  SpanKindName,
  StatusCodeName,
  StoredEvent,
  StoredLink,
  StoredLogLine,
  StoredSpan,
  StoredTrace,
  TraceSummary,
} from "./model.js";
export {
  attributesOf,
  type DecodedSpans,
  decodeEncodedSpan,
  decodeOtlp,
  type EncodedSpan,
  type EncodedSpans,
  encodedSpansFromProtobuf,
  encodingOf,
  logLinesFromRequest,
  OtlpDecodeError,
  type OtlpEncoding,
  otlpSchemas,
  type SpanOrigin,
  spansFromRequest,
} from "./otlp.js";
export {
  createReceiverHandler,
  exporterEnv,
  type Receiver,
  type ReceiverOptions,
  startReceiver,
} from "./receiver.js";
export { type SpanRow, spanRows } from "./span-tree.js";
export {
  type AddResult,
  type AttributeQuery,
  compareNano,
  summarize,
  TraceStore,
  type TraceStoreOptions,
  type TraceStoreStats,
} from "./trace-store.js";
