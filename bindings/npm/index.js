// hubspot-edge for JavaScript: the Rust core (wasm) behind a small API. An ES module with no
// Node built-ins: Node >= 18, Deno, Bun, browsers and edge runtimes that compile wasm from bytes.
import wasmBase64 from "./dist/core_bg.wasm.js";
import * as core from "./dist/core.js";

function bytesOf(base64) {
  const text = atob(base64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

core.initSync({ module: bytesOf(wasmBase64) });

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Base class of every error this package throws: `code` is stable, match on it. */
export class HubSpotEdgeError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = new.target.name;
    this.code = code;
  }
}
/** A HubSpot signature did not verify (`signature_mismatch`, `timestamp_expired`, …). */
export class SignatureError extends HubSpotEdgeError {}
/** The body is not a JSON array of events (`batch_malformed`). */
export class EventError extends HubSpotEdgeError {}
/** A filter, map or secret could not be read (`filter_config_invalid`, …). */
export class ConfigError extends HubSpotEdgeError {}
/** A value the map refuses, or an unknown object type (`mapping_object_unknown`). */
export class MappingError extends HubSpotEdgeError {}
/** A Standard Webhooks delivery did not verify (`webhook_signature_mismatch`, …). */
export class WebhookError extends HubSpotEdgeError {}

const KINDS = { SignatureError, EventError, ConfigError, MappingError, WebhookError };

function call(f) {
  try {
    return f();
  } catch (e) {
    if (typeof e === "string" && e.startsWith("{")) {
      const { kind, code, message } = JSON.parse(e);
      throw new (KINDS[kind] ?? HubSpotEdgeError)(code, message);
    }
    throw e;
  }
}

function toBytes(body) {
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return encoder.encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError("body must be a Uint8Array, ArrayBuffer or string");
}

function headerPairs(headers) {
  if (headers == null) return [];
  if (typeof headers.entries === "function" && !Array.isArray(headers)) return [...headers.entries()];
  if (Array.isArray(headers)) return headers;
  return Object.entries(headers).filter(([, v]) => v != null).map(([k, v]) => [k, String(v)]);
}

const SIGNATURE_HEADERS = ["x-hubspot-signature-v3", "x-hubspot-request-timestamp", "x-hubspot-signature", "x-hubspot-signature-version"];

/** The four headers a verification reads (the first of each name, any case), absent as undefined. */
function signatureHeaders(headers) {
  if (headers != null && typeof headers.get === "function" && !(headers instanceof Map)) {
    return SIGNATURE_HEADERS.map((n) => headers.get(n) ?? undefined);
  }
  const found = new Map();
  for (const [k, v] of headerPairs(headers instanceof Map ? [...headers.entries()] : headers)) {
    const name = k.toLowerCase();
    if (!found.has(name)) found.set(name, String(v));
  }
  return SIGNATURE_HEADERS.map((n) => found.get(n));
}

/**
 * Verifies a HubSpot request's signature in constant time; returns the version that verified.
 * Synchronous: the digest is computed in wasm. {@link verifyRequest} uses WebCrypto instead.
 * @param {import("./index").VerifyOptions} options
 */
export function verifySignature({ secret, method = "POST", url, headers, body, nowMs = Date.now(), allowLegacy = false, maxAgeMs = 300_000 }) {
  return call(() => core.verifySignature(secret, method, url, ...signatureHeaders(headers), toBytes(body), nowMs, allowLegacy, maxAgeMs));
}

const subtle = globalThis.crypto?.subtle;
const hmacKeys = new Map();

/** The digest of `message` through WebCrypto (native code): HMAC-SHA-256 keyed with `secret`, or SHA-256. */
async function webDigest(hmac, secret, message) {
  if (!hmac) return new Uint8Array(await subtle.digest("SHA-256", message));
  let key = hmacKeys.get(secret);
  if (key === undefined) {
    key = await subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    // A handful of secrets per process at most; bounded anyway.
    if (hmacKeys.size >= 16) hmacKeys.clear();
    hmacKeys.set(secret, key);
  }
  return new Uint8Array(await subtle.sign("HMAC", key, message));
}

/**
 * {@link verifySignature} with the digest through WebCrypto when the runtime has it (Node ≥ 18,
 * Deno, Bun, browsers, Workers): the same checks and errors; the comparison stays in wasm, in
 * constant time.
 * @param {import("./index").VerifyOptions} options
 */
export async function verifySignatureAsync(options) {
  if (!subtle) return verifySignature(options);
  const { secret, method = "POST", url, headers, body, nowMs = Date.now(), allowLegacy = false, maxAgeMs = 300_000 } = options;
  const challenge = call(() => core.challenge(secret, method, url, ...signatureHeaders(headers), toBytes(body), nowMs, allowLegacy, maxAgeMs));
  try {
    const digest = await webDigest(challenge.hmac, secret, challenge.message());
    return call(() => challenge.check(digest));
  } finally {
    challenge.free();
  }
}

/**
 * Reads and verifies a fetch `Request` (Workers, Deno, Bun, Hono's `c.req.raw`, Node 18+).
 * Resolves to `{ version, body }` (the raw bytes, for {@link parseEvents}).
 */
export async function verifyRequest(request, { secret, url = request.url, allowLegacy = false, nowMs = Date.now(), maxAgeMs = 300_000 }) {
  const body = new Uint8Array(await request.arrayBuffer());
  const version = await verifySignatureAsync({ secret, method: request.method, url, headers: request.headers, body, nowMs, allowLegacy, maxAgeMs });
  return { version, body };
}

/** The `X-HubSpot-Signature-v3` value. */
export function signV3({ secret, method = "POST", url, body, timestampMs }) {
  return core.signV3(secret, method, url, toBytes(body), timestampMs);
}
/** The v2 `X-HubSpot-Signature` value (workflow actions). */
export function signV2({ secret, method = "POST", url, body }) {
  return core.signV2(secret, method, url, toBytes(body));
}
/** The v1 `X-HubSpot-Signature` value. */
export function signV1({ secret, body }) {
  return core.signV1(secret, toBytes(body));
}

/** A compiled filter (the Worker's `FILTER_RULES`: an object or its JSON). */
export class Filter {
  constructor(rules) {
    this._inner = call(() => new core.Filter(typeof rules === "string" ? rules : JSON.stringify(rules)));
  }
}

/** One event of a batch: its facts, and its JSON decoded only when read. */
class ParsedEvent {
  #bytes;
  #start;
  #end;
  #raw;
  #event;
  constructor(bytes, t) {
    this.#bytes = bytes;
    this.#start = t[0];
    this.#end = t[1];
    this.dedupeKey = t[2];
    this.subscriptionType = t[3];
    this.objectType = t[4];
    this.portalId = t[5];
    this.objectId = t[6];
    if (t[7] !== null) this.verdict = t[7];
  }
  /** Its JSON text exactly as received. */
  get raw() {
    return (this.#raw ??= decoder.decode(this.#bytes.subarray(this.#start, this.#end)));
  }
  /** The event's own fields (decoded on first read). */
  get event() {
    return (this.#event ??= JSON.parse(this.raw));
  }
  toJSON() {
    return { ...this, event: this.event };
  }
}

/**
 * Parses a webhook body into events: `dedupeKey`, `subscriptionType`, `objectType`, `portalId`,
 * `objectId`, `verdict` (with a filter), and `event` (the event's own fields, decoded when
 * read). An element that is not an event has `error` (its code) and `raw`.
 */
export function parseEvents(body, filter) {
  const bytes = toBytes(body);
  const tuples = JSON.parse(call(() => (filter ? filter._inner.parseEvents(bytes) : core.parseEvents(bytes))));
  const out = new Array(tuples.length);
  for (let i = 0; i < tuples.length; i++) {
    const t = tuples[i];
    out[i] = t.length === 3 ? { error: t[2], raw: decoder.decode(bytes.subarray(t[0], t[1])) } : new ParsedEvent(bytes, t);
  }
  return out;
}

/** A field map (the Worker's `ENRICHMENT_MAP`: an object or its JSON). */
export class Mapping {
  constructor(config) {
    this._inner = call(() => new core.Mapping(typeof config === "string" ? config : JSON.stringify(config)));
  }
  /** HubSpot properties (text or null) to your record. */
  toRecord(objectType, properties) {
    return JSON.parse(call(() => this._inner.toRecord(objectType, JSON.stringify(properties))));
  }
  /** Your record back to HubSpot property values (text). */
  toHubSpot(objectType, record) {
    return JSON.parse(call(() => this._inner.toHubSpot(objectType, JSON.stringify(record))));
  }
  /** The changes between two records, typed by the map: `[{ field, old, new }]`. */
  diff(objectType, oldRecord, newRecord) {
    return JSON.parse(call(() => this._inner.diff(objectType, JSON.stringify(oldRecord), JSON.stringify(newRecord))));
  }
}

/** A Standard Webhooks secret (`whsec_…`): sign what you send, verify what you receive. */
export class StandardWebhook {
  constructor(secret) {
    this._inner = call(() => new core.StandardWebhook(secret));
  }
  /** The `webhook-signature` value (`v1,<base64>`). */
  sign(msgId, timestampS, body) {
    return this._inner.sign(msgId, timestampS, toBytes(body));
  }
  /** Headers for a delivery of `body`: `webhook-id`, `webhook-timestamp`, `webhook-signature`. */
  headers(msgId, body, timestampS = Math.floor(Date.now() / 1000)) {
    return { "webhook-id": msgId, "webhook-timestamp": String(timestampS), "webhook-signature": this.sign(msgId, timestampS, body) };
  }
  /** Verifies a delivery (headers as a `Headers`, object or pairs); throws `WebhookError`. */
  verify(headers, body, { nowS = Math.floor(Date.now() / 1000), toleranceS = 300 } = {}) {
    const h = new Map(headerPairs(headers).map(([k, v]) => [k.toLowerCase(), v]));
    call(() => this._inner.verify(h.get("webhook-id") ?? "", h.get("webhook-timestamp") ?? "", h.get("webhook-signature") ?? "", toBytes(body), nowS, toleranceS));
  }
}
