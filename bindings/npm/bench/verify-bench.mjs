// The npm package's verify + parse + filter of one 100-event HubSpot batch against the official
// Node client's path (Signature.isValid v3 + JSON.parse + the same filter in JavaScript), the
// same batch, interleaved in one run. Run (Node 22 from the repository's node_modules):
//   bash scripts/build-npm.sh && node_modules/.bin/node bindings/npm/bench/verify-bench.mjs
import { createRequire } from "node:module";
import * as he from "../index.js";

const { Signature } = createRequire(import.meta.url)("@hubspot/api-client");
const SECRET = "bench-client-secret";
const URL_ = "https://hooks.example.com/webhooks/hubspot";
const types = ["contact.propertyChange", "contact.creation", "deal.propertyChange", "company.deletion"];
const body = JSON.stringify(Array.from({ length: 100 }, (_, i) => ({
  eventId: 1_000_000 + i, subscriptionId: 9, portalId: 62515, appId: 7, occurredAt: 1_700_000_000_000 + i,
  subscriptionType: types[i % 4], attemptNumber: 0, objectId: 5000 + i, propertyName: "lifecyclestage",
  propertyValue: "customer", changeSource: "CRM", sourceId: "userId:123",
})));
const bytes = new TextEncoder().encode(body);
const filter = new he.Filter({ include: [{ types: ["contact.*", "deal.propertyChange"] }] });
const keep = (t) => t.startsWith("contact.") || t === "deal.propertyChange";

function ours() {
  const ts = String(Date.now());
  const sig = signature(ts);
  he.verifySignature({ secret: SECRET, url: URL_, headers: { "X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts }, body: bytes });
  let kept = 0;
  for (const e of he.parseEvents(bytes, filter)) if (e.verdict === "keep") kept++;
  return kept;
}

// The same with the digest through WebCrypto (what verifyRequest does).
async function oursAsync() {
  const ts = String(Date.now());
  const sig = signature(ts);
  await he.verifySignatureAsync({ secret: SECRET, url: URL_, headers: { "X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts }, body: bytes });
  let kept = 0;
  for (const e of he.parseEvents(bytes, filter)) if (e.verdict === "keep") kept++;
  return kept;
}

function official() {
  const ts = String(Date.now());
  const sig = signature(ts);
  const text = new TextDecoder().decode(bytes);
  if (!Signature.isValid({ signature: sig, clientSecret: SECRET, requestBody: text, url: URL_, method: "POST", signatureVersion: "v3", timestamp: Number(ts) })) throw new Error("invalid");
  let kept = 0;
  for (const e of JSON.parse(text)) if (keep(e.subscriptionType)) kept++;
  return kept;
}

// Signing is outside what is measured: cached per timestamp.
const sigs = new Map();
function signature(ts) {
  if (!sigs.has(ts)) sigs.set(ts, he.signV3({ secret: SECRET, url: URL_, body: bytes, timestampMs: Number(ts) }));
  return sigs.get(ts);
}

const ROUNDS = Number(process.argv[2] ?? 20);
const PER = 500;
const paths = { ours, ours_async: oursAsync, official };
const times = Object.fromEntries(Object.keys(paths).map((k) => [k, []]));
if (ours() !== official() || (await oursAsync()) !== official()) throw new Error("the paths disagree");
for (let r = 0; r < ROUNDS; r++) {
  // A different order each round, so that no path always runs first.
  const names = Object.keys(paths);
  for (let i = 0; i < r % names.length; i++) names.push(names.shift());
  for (const name of names) {
    const f = paths[name];
    const t = performance.now();
    for (let i = 0; i < PER; i++) await f();
    times[name].push(((performance.now() - t) * 1000) / PER);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const [o, a, h] = [median(times.ours), median(times.ours_async), median(times.official)];
console.log(`BENCH name=npm_verify_parse_filter events=100 body_bytes=${bytes.length} ours_us=${o.toFixed(1)} ours_async_us=${a.toFixed(1)} official_us=${h.toFixed(1)} ratio=${(o / h).toFixed(2)} ratio_async=${(a / h).toFixed(2)} node=${process.version} rounds=${ROUNDS}x${PER}`);
