import { type KeyObject, sign, verify } from "node:crypto";
import type { InstanceRecord } from "./registry.js";

/** Signs a registry record as its service (with the service's identity key). */
export type RecordSigner = (key: string, record: InstanceRecord) => string;
/** Whether a registry record under `key` was signed by the service it names. */
export type RecordVerifier = (key: string, record: InstanceRecord & { signature?: unknown }) => boolean;

/** What is signed: the key and every field of the record, in a fixed order. */
function payload(key: string, r: InstanceRecord): Buffer {
  return Buffer.from(
    JSON.stringify([
      key,
      r.service,
      r.instanceId,
      r.address,
      r.protocols,
      r.version,
      r.startedAt,
      r.heartbeatAt,
    ]),
  );
}

/** Signs records with `privateKey` (Ed25519: the service's `IDENTITY_KEY`). */
export function createRecordSigner(privateKey: KeyObject): RecordSigner {
  return (key, record) => sign(null, payload(key, record), privateKey).toString("base64url");
}

/**
 * Accepts a record only when it is signed by the key `trust` has for the service it names and
 * sits under that service's key prefix: on a NATS where anyone may write the bucket, an entry for
 * `users` written by anyone but users is ignored.
 */
export function createRecordVerifier(trust: ReadonlyMap<string, KeyObject>): RecordVerifier {
  return (key, record) => {
    const owner = typeof record.service === "string" ? trust.get(record.service) : undefined;
    if (!owner || typeof record.signature !== "string") return false;
    if (!key.startsWith(`${record.service.replace(/[^A-Za-z0-9_-]/g, "_")}.`)) return false;
    try {
      return verify(null, payload(key, record), owner, Buffer.from(record.signature, "base64url"));
    } catch {
      return false;
    }
  };
}
