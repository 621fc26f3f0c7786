import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type User as UserMessage,
  UserSchema,
  type UserService,
} from "@meshwork/contracts/meshwork/users/v1/users";
import { InvalidPageTokenError } from "@meshwork/db";
import { mapErrors } from "@meshwork/runtime";
import { createFirstAdmin } from "../../app/commands/create-first-admin.js";
import { exchangeLegacyToken } from "../../app/commands/exchange-legacy-token.js";
import { login } from "../../app/commands/login.js";
import { registerUser } from "../../app/commands/register-user.js";
import { getUser } from "../../app/queries/get-user.js";
import { listUsers } from "../../app/queries/list-users.js";
import type { App } from "../../app.js";
import { AccessDeniedError } from "../../domain/access.js";
import { TooManyFailuresError } from "../../domain/auth-attempts.js";
import { BootstrapSecretMismatchError, BootstrapUnavailableError } from "../../domain/bootstrap.js";
import {
  EmailTakenError,
  InvalidCredentialsError,
  InvalidLegacyTokenError,
  LegacyExchangeUnavailableError,
  LegacyUserUnknownError,
  type User,
  UserNotFoundError,
} from "../../domain/user.js";
import { callerOf } from "./caller.js";

function toMessage(user: User): UserMessage {
  return create(UserSchema, {
    id: user.id,
    email: user.email,
    displayName: user.displayName,
    roles: user.roles,
    createTime: timestampFromDate(user.createdAt),
  });
}

/** The one place where the service's domain errors become status codes. */
function toConnectError(err: unknown): unknown {
  if (err instanceof EmailTakenError) return new ConnectError(err.message, Code.AlreadyExists);
  if (err instanceof InvalidCredentialsError) return new ConnectError(err.message, Code.Unauthenticated);
  if (err instanceof UserNotFoundError) return new ConnectError(err.message, Code.NotFound);
  if (err instanceof InvalidLegacyTokenError) return new ConnectError(err.message, Code.Unauthenticated);
  if (err instanceof LegacyUserUnknownError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof LegacyExchangeUnavailableError)
    return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof TooManyFailuresError) {
    // The client (and the gateway, which forwards it) learns when to come back.
    return new ConnectError(err.message, Code.ResourceExhausted, { "retry-after": String(err.retryAfterS) });
  }
  if (err instanceof BootstrapUnavailableError) return new ConnectError(err.message, Code.FailedPrecondition);
  if (err instanceof BootstrapSecretMismatchError)
    return new ConnectError(err.message, Code.PermissionDenied);
  if (err instanceof AccessDeniedError) return new ConnectError(err.message, Code.PermissionDenied);
  if (err instanceof InvalidPageTokenError) return new ConnectError(err.message, Code.InvalidArgument);
  return err;
}

const mapped = mapErrors(toConnectError);

/** Translates between the proto messages and the use cases. */
export function createUserServiceHandlers(app: () => App): ServiceImpl<typeof UserService> {
  return {
    registerUser: (req) =>
      mapped(async () => {
        const user = await registerUser(app(), {
          email: req.email,
          password: req.password,
          displayName: req.displayName,
        });
        return { user: toMessage(user) };
      }),
    createFirstAdmin: (req) =>
      mapped(async () => {
        const user = await createFirstAdmin(app(), {
          bootstrapSecret: req.bootstrapSecret,
          email: req.email,
          password: req.password,
          displayName: req.displayName,
        });
        return { user: toMessage(user) };
      }),
    login: (req) =>
      mapped(async () => {
        const issued = await login(app(), { email: req.email, password: req.password });
        return {
          accessToken: issued.token,
          tokenType: "Bearer",
          expireTime: timestampFromDate(issued.expiresAt),
          user: toMessage(issued.user),
        };
      }),
    exchangeLegacyToken: (req) =>
      mapped(async () => {
        const issued = await exchangeLegacyToken(app(), req.legacyToken);
        return {
          accessToken: issued.token,
          tokenType: "Bearer",
          expireTime: timestampFromDate(issued.expiresAt),
          user: toMessage(issued.user),
        };
      }),
    getUser: (req, ctx) =>
      mapped(async () => ({ user: toMessage(await getUser(app(), callerOf(ctx), req.id)) })),
    rotateSigningKey: () =>
      mapped(async () => {
        const rotation = await app().keys.rotate();
        return {
          kid: rotation.kid,
          retiredKids: rotation.retired,
          retiredDropTime: timestampFromDate(rotation.retiredDroppedAt),
        };
      }),
    listUsers: (req, ctx) =>
      mapped(async () => {
        const page = await listUsers(app(), callerOf(ctx), {
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        });
        return { users: page.users.map(toMessage), nextPageToken: page.nextPageToken };
      }),
  };
}
