// Benchmarks the ingress path compiled to wasm32 (V8, Node 22) against a JS baseline doing
// the same work, on the very same bytes (the body and headers come from the wasm module).
//
//   node bench/run.mjs [--quick]      (bench/pkg must hold the wasm-bindgen --target nodejs output)
//
// Prints `BENCH name=<id> ns_per_batch=<n>` for wasm_software_hmac, wasm_host_hmac,
// wasm_verify_only, wasm_parse_filter_keys, js_baseline, js_verify_only, js_parse_filter_keys,
// then `RATIO a/b=<x>` lines (medians). Each figure is the median of 21 rounds of ~25 ms after
// ~300 ms of warm-up, the same harness as the native binary; an `INFO` line after each gives the
// fastest and slowest round.

import { createHmac, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const { Bench, EnrichBench } = require(path.join(here, 'pkg', 'hubspot_edge_bench.js'));

const quick = process.argv.includes('--quick');
const SCALE = quick ? 10 : 1;
const ROUNDS = 21;

const bench = new Bench();
const config = JSON.parse(bench.config());
const body = Buffer.from(bench.body());
const signature = bench.signature();
const timestamp = bench.timestamp();
const { secret: SECRET, method: METHOD, uri: URI, nowMs: NOW_MS, requestId: REQUEST_ID, traceparent: TRACEPARENT } = config;

// --- JS baseline: the same path written the way a Node/Workers JS integration would -------------

const MAX_AGE_MS = 5 * 60 * 1000;
const MAX_FUTURE_MS = 60 * 1000;
const OBJECT_TYPE_NAMES = { '0-1': 'contact', '0-2': 'company', '0-3': 'deal', '0-5': 'ticket', '0-7': 'product', '0-8': 'line_item' };

// The same semantics as core/src/filter.rs, compiled once like the Rust filter.
function compileFilter(rules) {
  const typePattern = (p) => {
    if (p === '*' || p === '*.*') return () => true;
    const dot = p.indexOf('.');
    if (dot >= 0 && p.slice(dot + 1) === '*') { const prefix = p.slice(0, dot + 1); return (t) => t.startsWith(prefix); }
    if (dot >= 0 && p.slice(0, dot) === '*') { const suffix = p.slice(dot); return (t) => t.endsWith(suffix); }
    return (t) => t === p;
  };
  const rule = (r) => ({
    types: (r.types ?? []).map(typePattern),
    objectTypes: (r.objectTypes ?? []).map((t) => OBJECT_TYPE_NAMES[t] ?? t),
    properties: r.properties ?? [],
    portalIds: r.portalIds ?? [],
    changeSources: r.changeSources ?? [],
  });
  const include = (rules.include ?? []).map(rule);
  const exclude = (rules.exclude ?? []).map(rule);
  const ownAppIds = (rules.ignoreOwnChanges?.appIds ?? []).map(String);
  const ownSourceIds = rules.ignoreOwnChanges?.sourceIds ?? [];
  const matches = (r, e, type, objectType) =>
    (r.types.length === 0 || r.types.some((m) => m(type))) &&
    (r.objectTypes.length === 0 || r.objectTypes.includes(objectType)) &&
    (r.properties.length === 0 || (e.propertyName !== undefined && r.properties.includes(e.propertyName))) &&
    (r.portalIds.length === 0 || r.portalIds.includes(e.portalId)) &&
    (r.changeSources.length === 0 || (e.changeSource !== undefined && r.changeSources.includes(e.changeSource)));
  return (e, type) => {
    const source = e.sourceId;
    if (typeof source === 'string' && (ownSourceIds.includes(source) || ownAppIds.some((id) =>
      source === id || (source.endsWith(id) && source.charCodeAt(source.length - id.length - 1) === 58 /* : */)))) {
      return false;
    }
    const dot = type.indexOf('.');
    let objectType = dot >= 0 ? type.slice(0, dot) : '';
    if (objectType === 'object' && typeof e.objectTypeId === 'string') objectType = OBJECT_TYPE_NAMES[e.objectTypeId] ?? e.objectTypeId;
    if (include.length > 0 && !include.some((r) => matches(r, e, type, objectType))) return false;
    if (exclude.some((r) => matches(r, e, type, objectType))) return false;
    return true;
  };
}

const keep = compileFilter(config.filterRules);

function jsVerify(bodyBytes, sig, ts) {
  if (!/^[0-9]{1,19}$/.test(ts)) throw new Error('timestamp_invalid');
  const t = Number(ts);
  if (NOW_MS - t > MAX_AGE_MS) throw new Error('timestamp_expired');
  if (t - NOW_MS > MAX_FUTURE_MS) throw new Error('timestamp_in_future');
  const expected = Buffer.from(sig.replaceAll(' ', '+'), 'base64');
  if (expected.length !== 32) throw new Error('signature_malformed');
  const digest = createHmac('sha256', SECRET).update(METHOD).update(URI).update(bodyBytes).update(ts).digest();
  if (!timingSafeEqual(digest, expected)) throw new Error('signature_mismatch');
}

const dash = (v) => (v === undefined || v === null ? '-' : v);

// Cloudflare Queues' message limit less room for the envelope, as core's MAX_MESSAGE_BYTES.
const MAX_MESSAGE_BYTES = 127 * 1024;

// What core's ingress::triage does: filter, dedupe key, each key queued once per batch, the
// queue message written (the same envelope, field order and bytes as core's
// event_message_json, checked below); an event past the message limit would go by reference.
function jsParseFilterKeys(bodyBytes, onQueued) {
  const events = JSON.parse(bodyBytes.toString('utf8'));
  if (!Array.isArray(events)) throw new Error('batch_malformed');
  const seen = new Set();
  const queue = [];
  let byReference = 0;
  for (const e of events) {
    if (typeof e !== 'object' || e === null) continue;
    const type = e.subscriptionType ?? e.eventType;
    if (typeof type !== 'string' || e.portalId == null || e.eventId == null || e.occurredAt == null) continue;
    if (!keep(e, type)) continue;
    const key = `hs1_${e.portalId}_${dash(e.appId)}_${dash(e.subscriptionId)}_${e.eventId}_${dash(e.objectId)}_${e.occurredAt}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const message = JSON.stringify({
      v: 1, key, attempt: 1, receivedAt: NOW_MS, requestId: REQUEST_ID, traceparent: TRACEPARENT, event: e,
    });
    if (message.length * 3 <= MAX_MESSAGE_BYTES || Buffer.byteLength(message) <= MAX_MESSAGE_BYTES) {
      queue.push(message);
      if (onQueued) onQueued(message);
    } else {
      byReference += 1;
    }
  }
  return queue.length + byReference;
}

function jsBaseline(bodyBytes, sig, ts) {
  jsVerify(bodyBytes, sig, ts);
  return jsParseFilterKeys(bodyBytes);
}

// --- wasm paths ----------------------------------------------------------------------------------

const wasmSoftware = (b, sig, ts) => bench.fullSoftware(b, sig, ts);

// The Worker's path: wasm builds the challenge, the host computes the HMAC natively.
function wasmHostHmac(b, sig, ts) {
  const message = bench.prepare(b, sig, ts);
  const digest = createHmac('sha256', SECRET).update(message).digest();
  return bench.finish(digest);
}

// --- cross-check: both sides must queue the same events as the same message bytes ----------------

const wasmKeys = bench.keptMessages(body).split('\n');
const jsKeys = [];
const jsKept = jsParseFilterKeys(body, (m) => jsKeys.push(m));
jsVerify(body, signature, timestamp);
const keptSoftware = wasmSoftware(body, signature, timestamp);
const keptHost = wasmHostHmac(body, signature, timestamp);
if (wasmKeys.join('\n') !== jsKeys.join('\n') || keptSoftware !== jsKept || keptHost !== jsKept) {
  console.error('cross-check failed: wasm and JS disagree', { keptSoftware, keptHost, jsKept, wasm: wasmKeys.slice(0, 3), js: jsKeys.slice(0, 3) });
  process.exit(1);
}
let tamperedRejected = false;
try { wasmHostHmac(Buffer.from(body).fill(32, 5, 6), signature, timestamp); } catch { tamperedRejected = true; }
if (!tamperedRejected) { console.error('cross-check failed: tampered body accepted'); process.exit(1); }
console.log(`INFO wasm body_bytes=${body.length} kept=${jsKept} messages_match=true node=${process.version}`);

// --- harness -------------------------------------------------------------------------------------

let sink = 0;
function measure(f) {
  const warmupNs = 300e6 / SCALE;
  const roundNs = 25e6 / SCALE;
  let calls = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < warmupNs || calls < 10) {
    sink ^= f() | 0;
    calls += 1;
    elapsed = Number(process.hrtime.bigint() - start);
  }
  const iterations = Math.max(1, Math.floor(roundNs / (elapsed / calls)));
  const samples = [];
  for (let r = 0; r < ROUNDS; r += 1) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i += 1) sink ^= f() | 0;
    samples.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  samples.sort((a, b) => a - b);
  return samples;
}

const results = {};
const run = (name, f) => {
  const samples = measure(f);
  results[name] = samples[ROUNDS >> 1];
  console.log(`BENCH name=${name} ns_per_batch=${results[name].toFixed(0)}`);
  console.log(`INFO name=${name} min_ns=${samples[0].toFixed(0)} max_ns=${samples[ROUNDS - 1].toFixed(0)} rounds=${ROUNDS}`);
};

run('wasm_software_hmac', () => wasmSoftware(body, signature, timestamp));
run('wasm_host_hmac', () => wasmHostHmac(body, signature, timestamp));
run('wasm_verify_only', () => { bench.verifySoftware(body, signature, timestamp); return 1; });
run('wasm_parse_filter_keys', () => bench.parseFilterKeys(body));
run('js_baseline', () => jsBaseline(body, signature, timestamp));
run('js_verify_only', () => { jsVerify(body, signature, timestamp); return 1; });
run('js_parse_filter_keys', () => jsParseFilterKeys(body));

// Enrichment of one 100-record batch read (bench/native/src/enrich.rs): JSON decode alone,
// then decode + map + snapshot + diff. Checked once before timing.
const enrich = new EnrichBench();
if (enrich.full() !== 34 || enrich.decodeOnly() !== 1200) {
  console.error(`enrich cross-check failed: ${enrich.full()} fields, ${enrich.decodeOnly()} properties`);
  process.exit(1);
}
run('wasm_enrich_decode', () => enrich.decodeOnly());
run('wasm_enrich_full', () => enrich.full());

for (const [a, b] of [
  ['wasm_software_hmac', 'js_baseline'],
  ['wasm_host_hmac', 'js_baseline'],
  ['wasm_verify_only', 'js_verify_only'],
  ['wasm_parse_filter_keys', 'js_parse_filter_keys'],
  ['wasm_enrich_full', 'wasm_enrich_decode'],
]) {
  console.log(`RATIO ${a}/${b}=${(results[a] / results[b]).toFixed(2)}`);
}
if (sink === 0.5) console.log(sink); // keep the results observable
