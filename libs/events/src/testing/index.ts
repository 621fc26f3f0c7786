export { createEventsFixture, type EventsFixture, migrations, natsUrl, registry } from "./fixture.js";
export { effects, inbox, outbox, schema } from "./schema.js";
export { deleteNamespaceStreams } from "./streams.js";
