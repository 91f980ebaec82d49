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

/**
 * Verifies a HubSpot request's signature in constant time; returns the version that verified.
 * @param {import("./index").VerifyOptions} options
 */
export function verifySignature({ secret, method = "POST", url, headers, body, nowMs = Date.now(), allowLegacy = false, maxAgeMs = 300_000 }) {
  return call(() =>
    core.verifySignature(secret, method, url, JSON.stringify(headerPairs(headers)), toBytes(body), nowMs, allowLegacy, maxAgeMs),
  );
}

/**
 * Reads and verifies a fetch `Request` (Workers, Deno, Bun, Hono's `c.req.raw`, Node 18+).
 * Resolves to `{ version, body }` (the raw bytes, for {@link parseEvents}).
 */
export async function verifyRequest(request, { secret, url = request.url, allowLegacy = false, nowMs = Date.now(), maxAgeMs = 300_000 }) {
  const body = new Uint8Array(await request.arrayBuffer());
  const version = verifySignature({ secret, method: request.method, url, headers: request.headers, body, nowMs, allowLegacy, maxAgeMs });
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

/**
 * Parses a webhook body into events: `dedupeKey`, `subscriptionType`, `objectType`, `portalId`,
 * `objectId`, `verdict` (with a filter), and `event` (the event's own fields, decoded when
 * read). An element that is not an event has `error` (its code) and `raw`.
 */
export function parseEvents(body, filter) {
  const bytes = toBytes(body);
  const json = call(() => (filter ? filter._inner.parseEvents(bytes) : core.parseEvents(bytes)));
  return JSON.parse(json).map(({ start, end, ...facts }) => {
    let raw;
    const text = () => (raw ??= decoder.decode(bytes.subarray(start, end)));
    if (facts.error) return { ...facts, raw: text() };
    let event;
    return Object.defineProperties(facts, {
      raw: { get: text, enumerable: false },
      event: { get: () => (event ??= JSON.parse(text())), enumerable: true },
    });
  });
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
