import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { UserRegisteredSchema } from "@meshwork/contracts/meshwork/users/v1/events";
import type { Database } from "@meshwork/db";
import { createEnvelope, enqueueEvents } from "@meshwork/events";
import type { UsersUnitOfWork } from "../../domain/ports.js";
import { createBootstrapSecrets } from "./bootstrap-store.js";
import { outbox, type UsersSchema } from "./schema.js";
import { createUserRepository } from "./user-repository.js";

export const EVENT_SOURCE = "/meshwork/users";

/** Transactions over the users database, each with a repository and an outbox bound to it. */
export function createUsersUnitOfWork(db: Database<UsersSchema>, namespace: string): UsersUnitOfWork {
  return {
    run: (work) =>
      db.transaction((tx) =>
        work({
          users: createUserRepository(tx),
          bootstrap: createBootstrapSecrets(tx),
          events: {
            async userRegistered(user) {
              const message = create(UserRegisteredSchema, {
                userId: user.id,
                email: user.email,
                displayName: user.displayName,
                registerTime: timestampFromDate(user.createdAt),
              });
              await enqueueEvents(tx, outbox, [
                createEnvelope(UserRegisteredSchema, message, { source: EVENT_SOURCE, namespace }),
              ]);
            },
          },
        }),
      ),
  };
}
