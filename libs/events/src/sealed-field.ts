import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";

/**
 * A value sealed with AES-256-GCM for one reader: the id of the key it was sealed under, the
 * 12-byte nonce, and the ciphertext followed by its 16-byte tag. Structurally the same as a
 * generated `SealedValue` message, so either can be passed where the other is expected.
 */
export interface SealedValue {
  keyId: string;
  nonce: Uint8Array;
  ciphertext: Uint8Array;
}

/** One AES-256 key and the id that names it in a {@link SealedValue} (never the key itself). */
export interface SealingKey {
  id: string;
  key: Buffer;
}

/** A sealed value could not be opened: unknown key id, wrong key, other `aad` or tampered bytes. */
export class SealedValueError extends Error {
  override readonly name = "SealedValueError";
  constructor(
    message: string,
    readonly keyId: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Parses a key ring `id:key[,id:key...]` (each key 32 bytes, base64, base64url or 64 hex digits).
 * The first key seals; every key opens, so a rotation lists the new key first and keeps the
 * previous one until nothing sealed under it is left. Errors name `variable`, never a key.
 */
export function parseSealingKeys(text: string, variable: string): SealingKey[] {
  const entries = text
    .trim()
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  if (entries.length === 0) throw new Error(`${variable}: no key (expected id:base64key[,id:base64key])`);
  const keys = entries.map((entry, i) => {
    const colon = entry.indexOf(":");
    const id = colon > 0 ? entry.slice(0, colon) : "";
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(id))
      throw new Error(`${variable}: entry ${i + 1} needs an id (letters, digits, . _ -) before ':'`);
    const text = entry.slice(colon + 1);
    const key = /^[0-9a-fA-F]{64}$/.test(text) ? Buffer.from(text, "hex") : Buffer.from(text, "base64");
    if (key.length !== 32) throw new Error(`${variable}: key "${id}" is not 32 bytes (base64 or hex)`);
    return { id, key };
  });
  const ids = new Set(keys.map((k) => k.id));
  if (ids.size !== keys.length) throw new Error(`${variable}: a key id appears twice`);
  return keys;
}

/**
 * The key ring given as `variable` or in the file named by `${variable}_FILE` (a mounted Secret);
 * undefined when neither is set. Both set is an error naming them.
 */
export function readSealingKeys(
  env: Record<string, string | undefined>,
  variable: string,
): SealingKey[] | undefined {
  const text = env[variable] || undefined;
  const file = env[`${variable}_FILE`] || undefined;
  if (text && file) throw new Error(`set ${variable} or ${variable}_FILE, not both`);
  if (file) {
    let content: string;
    try {
      content = readFileSync(file, "utf8");
    } catch (err) {
      throw new Error(`${variable}_FILE: cannot read ${file}`, { cause: err });
    }
    return parseSealingKeys(content, `${variable}_FILE`);
  }
  return text ? parseSealingKeys(text, variable) : undefined;
}

/**
 * The additional authenticated data that binds a sealed value to one field of one record:
 * `recordId` NUL `field`. Seal and open each field of a record with its own, so a value sealed
 * for one field opens neither in another field of the record nor in any field of another record
 * (a sealed email cannot be replayed as a display name, or onto another user). Both sides must
 * name the field the same way (the contract's field name, e.g. `sealed_email`). Throws on a NUL
 * in either, which would make two different pairs one AAD (`a` NUL `b\0c` = `a\0b` NUL `c`).
 */
export function sealedFieldAad(recordId: string, field: string): string {
  if (recordId.includes("\0")) throw new Error("sealed field AAD: the record id holds a NUL character");
  if (field.includes("\0")) throw new Error("sealed field AAD: the field holds a NUL character");
  return `${recordId}\0${field}`;
}

/**
 * Seals `plaintext` under `key`, bound to `aad` (additional authenticated data, e.g. the id of
 * the record the value belongs to): the value opens only with the same key and the same `aad`,
 * so it cannot be moved to another record. A fresh random nonce per call.
 */
export function sealValue(key: SealingKey, plaintext: string, aad: string): SealedValue {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key.key, nonce);
  cipher.setAAD(Buffer.from(`${key.id}\0${aad}`, "utf8"));
  const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
  return { keyId: key.id, nonce, ciphertext: body };
}

/**
 * Opens a value sealed by {@link sealValue} with the key of its id among `keys`. Throws a
 * {@link SealedValueError} naming the key id (never the value) when the id is not among `keys`,
 * or the key, the `aad` or the bytes do not match.
 */
export function openValue(keys: readonly SealingKey[], sealed: SealedValue, aad: string): string {
  const key = keys.find((k) => k.id === sealed.keyId);
  if (!key)
    throw new SealedValueError(
      `sealed with key id "${sealed.keyId}", which is not among the accepted keys`,
      sealed.keyId,
    );
  if (sealed.nonce.length !== NONCE_BYTES || sealed.ciphertext.length < TAG_BYTES)
    throw new SealedValueError(`sealed value under key id "${sealed.keyId}" is malformed`, sealed.keyId);
  const body = sealed.ciphertext.subarray(0, sealed.ciphertext.length - TAG_BYTES);
  const tag = sealed.ciphertext.subarray(sealed.ciphertext.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key.key, sealed.nonce);
    decipher.setAAD(Buffer.from(`${key.id}\0${aad}`, "utf8"));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]).toString("utf8");
  } catch (err) {
    throw new SealedValueError(
      `sealed value does not open with key id "${sealed.keyId}" (wrong key, another record, or altered)`,
      sealed.keyId,
      { cause: err },
    );
  }
}
