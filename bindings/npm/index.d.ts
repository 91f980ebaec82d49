// Types for hubspot-edge (written for people; the implementation is index.js over wasm).

/** Bytes as they arrived: never re-serialised JSON. A string is encoded as UTF-8. */
export type Body = Uint8Array | ArrayBuffer | ArrayBufferView | string;
/** A `Headers`, a plain object or `[name, value]` pairs; names in any case. */
export type HeadersLike = Headers | Record<string, string | undefined> | Array<[string, string]>;

export interface VerifyOptions {
  /** The app's client secret (not a private app token). */
  secret: string;
  /** Default `POST`. */
  method?: string;
  /** The full URL HubSpot called: scheme, host, path and query (behind a proxy, the public one). */
  url: string;
  headers: HeadersLike;
  body: Body;
  /** Check the v3 timestamp against this instant (Unix ms); default now. */
  nowMs?: number;
  /** Accept v1/v2-only requests (workflow actions sign v2). Default false. */
  allowLegacy?: boolean;
  /** How old a v3 timestamp may be; default HubSpot's 5 minutes. */
  maxAgeMs?: number;
}

export type SignatureVersion = "v3" | "v2" | "v1";

/** Verifies a HubSpot signature in constant time, the digest in wasm. Throws {@link SignatureError}. */
export function verifySignature(options: VerifyOptions): SignatureVersion;
/**
 * {@link verifySignature} with the digest through WebCrypto (native code, faster on large
 * batches) where the runtime has it. Rejects with {@link SignatureError}.
 */
export function verifySignatureAsync(options: VerifyOptions): Promise<SignatureVersion>;
/** Reads a fetch `Request`'s body and verifies it (WebCrypto). Rejects with {@link SignatureError}. */
export function verifyRequest(
  request: Request,
  options: { secret: string; url?: string; allowLegacy?: boolean; nowMs?: number; maxAgeMs?: number },
): Promise<{ version: SignatureVersion; body: Uint8Array }>;

export function signV3(options: { secret: string; method?: string; url: string; body: Body; timestampMs: number }): string;
export function signV2(options: { secret: string; method?: string; url: string; body: Body }): string;
export function signV1(options: { secret: string; body: Body }): string;

/** Why a filter drops an event, or `keep`. */
export type Verdict = "keep" | "not_included" | "excluded" | "own_change";

export interface ParsedEvent {
  /** Stable across HubSpot's retries: dedupe on it. */
  dedupeKey: string;
  subscriptionType: string;
  /** `contact`, `deal`, …, or a custom object's type id. */
  objectType: string;
  portalId: number;
  objectId: number | null;
  /** Only when a filter was given. */
  verdict?: Verdict;
  /** The event's own fields as HubSpot sent them (decoded on first read; `JSON.stringify` includes it). */
  readonly event: Record<string, unknown>;
  /** Its JSON text exactly as received. */
  readonly raw: string;
}

export interface InvalidElement {
  /** Why this element is not an event (`event_missing_field`, `event_wrong_type`). */
  error: string;
  raw: string;
}

/** Parses a webhook body. Throws {@link EventError} when it is not a JSON array. */
export function parseEvents(body: Body, filter?: Filter): Array<ParsedEvent | InvalidElement>;

/** The Worker's `FILTER_RULES`: `{ include?, exclude?, ignoreOwnChanges? }`. Throws {@link ConfigError}. */
export class Filter {
  constructor(rules: string | object);
}

export type MappedRecord = Record<string, unknown>;

/** The Worker's `ENRICHMENT_MAP`: `{ objects: { contacts: { fields: [...] } } }`. Throws {@link ConfigError}. */
export class Mapping {
  constructor(config: string | object);
  toRecord(objectType: string, properties: Record<string, string | null>): MappedRecord;
  toHubSpot(objectType: string, record: MappedRecord): Record<string, string>;
  diff(objectType: string, oldRecord: MappedRecord, newRecord: MappedRecord): Array<{ field: string; old?: unknown; new: unknown }>;
}

/** A Standard Webhooks secret (`whsec_…`). Throws {@link ConfigError}. */
export class StandardWebhook {
  constructor(secret: string);
  sign(msgId: string, timestampS: number, body: Body): string;
  headers(msgId: string, body: Body, timestampS?: number): Record<"webhook-id" | "webhook-timestamp" | "webhook-signature", string>;
  /** Throws {@link WebhookError}. */
  verify(headers: HeadersLike, body: Body, options?: { nowS?: number; toleranceS?: number }): void;
}

export class HubSpotEdgeError extends Error {
  /** Stable: `signature_mismatch`, `timestamp_expired`, `batch_malformed`, … */
  readonly code: string;
}
export class SignatureError extends HubSpotEdgeError {}
export class EventError extends HubSpotEdgeError {}
export class ConfigError extends HubSpotEdgeError {}
export class MappingError extends HubSpotEdgeError {}
export class WebhookError extends HubSpotEdgeError {}
