import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { UserService } from "@meshwork/contracts/meshwork/users/v1/users";

export interface KeysRotateOptions {
  /** The gateway (RotateSigningKey needs the admin role, checked there). */
  gateway: string;
  /** An admin's access token (from Login). */
  token: string | undefined;
  out: NodeJS.WritableStream;
  err: NodeJS.WritableStream;
}

/**
 * `meshctl keys rotate`: the users service signs with a new key from now on; the old one stays
 * in the JWKS document until the tokens it signed have expired, then is dropped.
 */
export async function keysRotate(o: KeysRotateOptions): Promise<number> {
  if (!o.token) {
    o.err.write("keys rotate needs an admin's access token: --token TOKEN or MESHWORK_TOKEN\n");
    return 2;
  }
  const users = createClient(UserService, createGrpcTransport({ baseUrl: o.gateway }));
  try {
    const res = await users.rotateSigningKey({}, { headers: { authorization: `Bearer ${o.token}` } });
    o.out.write(`signing key rotated: ${res.kid} signs from now on\n`);
    if (res.retiredKids.length > 0) {
      const drop = res.retiredDropTime
        ? timestampDate(res.retiredDropTime).toISOString()
        : "after the overlap";
      o.out.write(
        `retired ${res.retiredKids.join(", ")}: still verifies the tokens it signed, dropped from the JWKS at ${drop}\n`,
      );
    }
    return 0;
  } catch (e) {
    const err = ConnectError.from(e);
    o.err.write(`keys rotate failed: ${err.message}\n`);
    return 1;
  }
}
