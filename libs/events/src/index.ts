export {
  type EventsConfig,
  eventsEnvShape,
  natsCredentialsEnvShape,
  toEventsConfig,
  toNatsCredentials,
} from "./config.js";
export {
  type BatchEventHandler,
  type BatchItem,
  createEventConsumer,
  DeadLetterHeaders,
  type EventConsumer,
  type EventConsumerOptions,
  type EventContext,
  type EventHandler,
} from "./consumer.js";
export { type DeadLetter, getDeadLetter, listDeadLetters, replayDeadLetter } from "./dlq.js";
export {
  cloudEventHeaders,
  createEnvelope,
  decodeEvent,
  type EventEnvelope,
  EventHeaders,
  eventSubject,
  UndecodableEventError,
} from "./envelope.js";
export {
  createForeignConsumer,
  type ForeignConsumerHost,
  type ForeignConsumerSpec,
} from "./foreign-consumer.js";
export { type InboxTable, inboxTable } from "./inbox.js";
export {
  DefaultNamespaceUnderTestError,
  isUnderTest,
  refuseDefaultNamespaceUnderTest,
} from "./namespace-guard.js";
export { connectNats, inboxPrefixOf, type NatsCredentials } from "./nats.js";
export {
  createOutboxRelay,
  enqueueEvents,
  type OutboxRelay,
  type OutboxRelayOptions,
  type OutboxTable,
  outboxTable,
} from "./outbox.js";
export { type OutboxPublisher, startOutboxPublisher } from "./publisher.js";
export {
  openValue,
  parseSealingKeys,
  readSealingKeys,
  type SealedValue,
  SealedValueError,
  type SealingKey,
  sealedFieldAad,
  sealValue,
} from "./sealed-field.js";
export { consumerOn, deadLetterSubject, meshStreams, type StreamOptions, streamName } from "./streams.js";
export { type ConsumerSpec, provision, type StreamSpec } from "./topology.js";
