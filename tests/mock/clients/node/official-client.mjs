// HubSpot's official Node client (@hubspot/api-client, pinned in the root package.json) against
// the mock: a create, a batch create and a batch read (with a missing id: 207), a search with a
// filter, and 429s (injected through `POST /__mock/faults`, and a real one from the burst
// limiter) with what the client surfaces of them (status, rate-limit headers, body policyName).
//
// Usage: HUBSPOT_MOCK_URL=http://127.0.0.1:PORT HUBSPOT_MOCK_TOKEN=T node official-client.mjs
// (or the URL and token as the two arguments). The mock must be fresh for this run: the script
// counts the mock's requests (`GET /__mock/stats`) to see the client's own retries, and spends
// the token's burst window at the end.
//
// Prints one JSON summary on stdout ({client, version, ok, checks[], created}) and exits 1 when
// any check failed, 2 on a setup error. Progress goes to stderr. Section numbers (§) refer to the
// project's HubSpot fact sheet; the behaviours are those of
// https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines (rate limits)
// and https://developers.hubspot.com/docs/api-reference/error-handling (errors, 207).

import { createRequire } from 'node:module';
import hubspot from '@hubspot/api-client';

const require = createRequire(import.meta.url);
const VERSION = require('@hubspot/api-client/package.json').version;

const baseUrl = (process.argv[2] ?? process.env.HUBSPOT_MOCK_URL ?? '').replace(/\/$/, '');
const token = process.argv[3] ?? process.env.HUBSPOT_MOCK_TOKEN ?? '';
if (!baseUrl || !token) {
  console.error('usage: official-client.mjs BASE_URL TOKEN (or HUBSPOT_MOCK_URL, HUBSPOT_MOCK_TOKEN)');
  process.exit(2);
}

const checks = [];
const created = { single: null, batch: [] };

/** Records one check; `detail` says what was seen (never property values beyond test data). */
function check(name, ok, detail) {
  checks.push({ name, ok: Boolean(ok), detail });
  console.error(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${JSON.stringify(detail)}`);
}

async function admin(method, path, body) {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status}`);
  return res.json();
}

const mockRequests = async () => (await admin('GET', '/__mock/stats')).requests;

/** Runs `fn`, which must throw the client's ApiException; returns it (or null). */
async function expectApiError(fn) {
  try {
    await fn();
    return null;
  } catch (e) {
    if (typeof e?.code !== 'number') throw e;
    return e;
  }
}

const isDigits = (s) => typeof s === 'string' && /^[0-9]+$/.test(s);
const validDate = (d) => d instanceof Date && !Number.isNaN(d.getTime());
const RL = 'x-hubspot-ratelimit-';

// Retries are off unless `numberOfApiCallRetries` is set (§5.4), so each call is one request.
const client = new hubspot.Client({ accessToken: token, basePath: baseUrl });
const contacts = client.crm.contacts;
const lastname = 'Officialnode';

async function run() {
  // 1. Create (POST /crm/v3/objects/contacts → 201 SimplePublicObject).
  const one = await contacts.basicApi.create({
    properties: { email: 'node.create@example.com', firstname: 'Ada', lastname },
    associations: [],
  });
  created.single = one.id;
  check('create', isDigits(one.id) && one.properties.hs_object_id === one.id
      && one.properties.email === 'node.create@example.com'
      && validDate(one.createdAt) && validDate(one.updatedAt) && one.archived === false,
    { id: one.id, createdAt: one.createdAt, archived: one.archived });

  // 2. Batch create (201, status COMPLETE) and batch read with one missing id (207 + errors).
  const batch = await contacts.batchApi.create({
    inputs: ['node.batch1@example.com', 'node.batch2@example.com'].map((email, i) => ({
      properties: { email, firstname: `B${i}`, lastname },
      associations: [],
    })),
  });
  created.batch = batch.results.map((r) => r.id).sort((a, b) => Number(a) - Number(b));
  check('batch_create', batch.status === 'COMPLETE' && batch.results.length === 2
      && created.batch.every(isDigits) && new Set(created.batch).size === 2
      && validDate(batch.startedAt) && validDate(batch.completedAt),
    { status: batch.status, ids: created.batch });

  const missing = '999999999';
  const readInfo = await contacts.batchApi.readWithHttpInfo({
    inputs: [...created.batch, missing].map((id) => ({ id })),
    properties: ['email', 'firstname'],
    propertiesWithHistory: [],
  });
  const read = readInfo.data;
  const readIds = read.results.map((r) => r.id).sort((a, b) => Number(a) - Number(b));
  const err = read.errors?.[0];
  check('batch_read_207', readInfo.httpStatusCode === 207
      && JSON.stringify(readIds) === JSON.stringify(created.batch)
      && read.numErrors === 1 && err?.category === 'OBJECT_NOT_FOUND'
      && err?.context?.ids?.includes(missing)
      && read.results.every((r) => typeof r.properties.email === 'string'),
    { httpStatus: readInfo.httpStatusCode, ids: readIds, numErrors: read.numErrors,
      errorCategory: err?.category, errorIds: err?.context?.ids });

  // 3. Search with a filter (EQ on email) and a sort (total, results, paging).
  const found = await contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: 'node.batch2@example.com' }] }],
    properties: ['email', 'firstname'],
    sorts: [],
    limit: 10,
    after: '0',
  });
  const byLast = await contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'lastname', operator: 'EQ', value: lastname }] }],
    properties: ['email'],
    sorts: [{ propertyName: 'createdate', direction: 'DESCENDING' }],
    limit: 2,
    after: '0',
  });
  check('search_filter', found.total === 1 && found.results.length === 1
      && found.results[0].id === created.batch[1]
      && found.results[0].properties.email === 'node.batch2@example.com'
      && byLast.total === 3 && byLast.results.length === 2 && isDigits(byLast.paging?.next?.after),
    { total: found.total, id: found.results[0]?.id, byLastnameTotal: byLast.total,
      nextAfter: byLast.paging?.next?.after });

  // 4a. An injected 429 with retries off: one request, the error carries status and body.
  await admin('POST', '/__mock/faults', { next: [{ status: 429 }] });
  let before = await mockRequests();
  const injected = await expectApiError(() => contacts.basicApi.getById(created.single));
  let sent = (await mockRequests()) - before;
  check('injected_429_surfaced', injected?.code === 429
      && injected.body?.policyName === 'TEN_SECONDLY_ROLLING'
      && injected.body?.errorType === 'RATE_LIMIT' && sent === 1,
    { status: injected?.code, policyName: injected?.body?.policyName,
      errorType: injected?.body?.errorType, requestsSent: sent });

  // 4b. The client's own retry on the search limit (§5.4: it matches the body's message
  // "You have reached your secondly limit." and waits 1 s): the mock's search 429 must be
  // recognised, so the search succeeds on the second request.
  const retrying = new hubspot.Client({ accessToken: token, basePath: baseUrl, numberOfApiCallRetries: 2 });
  await admin('POST', '/__mock/faults', { next: [{ status: 429, policy: 'SECONDLY' }] });
  before = await mockRequests();
  const retried = await retrying.crm.contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: 'node.create@example.com' }] }],
    properties: ['email'], sorts: [], limit: 1, after: '0',
  });
  sent = (await mockRequests()) - before;
  check('search_429_retried_by_client', retried.total === 1 && sent === 2,
    { total: retried.total, requestsSent: sent });

  // 4c. A real 429 from the burst limiter: read the window from the headers of a success,
  // spend what remains, and the next call is refused with the headers at 0 (§5.2, §5.3).
  const info = await contacts.basicApi.getByIdWithHttpInfo(created.single);
  const h = info.headers;
  const max = Number(h[`${RL}max`]);
  const remaining = Number(h[`${RL}remaining`]);
  check('rate_limit_headers_on_success', info.httpStatusCode === 200
      && Number.isInteger(max) && max > 0 && Number.isInteger(remaining) && remaining < max
      && isDigits(h[`${RL}interval-milliseconds`]) && isDigits(h[`${RL}daily`])
      && isDigits(h[`${RL}daily-remaining`]),
    { max, remaining, intervalMs: h[`${RL}interval-milliseconds`], daily: h[`${RL}daily`],
      dailyRemaining: h[`${RL}daily-remaining`] });
  if (!(max > 0 && max <= 1000)) throw new Error(`unusable X-HubSpot-RateLimit-Max: ${max}`);

  let ok = 0;
  let limited = null;
  for (let i = 0; i <= max && !limited; i += 1) {
    limited = await expectApiError(() => contacts.basicApi.getById(created.single));
    if (!limited) ok += 1;
  }
  const lh = limited?.headers ?? {};
  check('limiter_429_with_headers', limited?.code === 429 && ok === remaining
      && lh[`${RL}remaining`] === '0' && Number(lh[`${RL}max`]) === max
      && isDigits(lh[`${RL}interval-milliseconds`])
      && limited.body?.policyName === 'TEN_SECONDLY_ROLLING'
      && limited.body?.errorType === 'RATE_LIMIT',
    { status: limited?.code, succeededBefore: ok, announcedRemaining: remaining,
      remaining: lh[`${RL}remaining`], max: lh[`${RL}max`],
      intervalMs: lh[`${RL}interval-milliseconds`], policyName: limited?.body?.policyName });
}

let exitCode = 0;
try {
  await run();
} catch (e) {
  check('no_unexpected_error', false, { error: String(e?.message ?? e).split('\n')[0], code: e?.code });
}
const ok = checks.length > 0 && checks.every((c) => c.ok);
if (!ok) exitCode = 1;
process.stdout.write(`${JSON.stringify({ client: '@hubspot/api-client', version: VERSION, ok, checks, created })}\n`);
process.exit(exitCode);
