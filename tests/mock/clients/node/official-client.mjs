// HubSpot's official Node client (@hubspot/api-client, pinned in the root package.json) against
// the mock: a create, a batch create and a batch read (with a missing id: 207), a search with a
// filter, a read by email (idProperty), a labelled association, a custom workflow action
// (definitions with the developer API key, a blocked execution completed through the client's
// CallbacksApi, single and batch), and 429s (injected through
// `POST /__mock/faults`, and a real one from the burst limiter) with what the client surfaces
// of them (status, rate-limit headers, body policyName).
//
// Usage: HUBSPOT_MOCK_URL=http://127.0.0.1:PORT HUBSPOT_MOCK_TOKEN=T node official-client.mjs
// (or the URL and token as the two arguments; HUBSPOT_MOCK_DEVELOPER_KEY is the mock's developer
// API key, default mock-developer-api-key). The mock must be fresh for this run: the script
// counts the mock's requests (`GET /__mock/stats`) to see the client's own retries, and spends
// the token's burst window at the end.
//
// Prints one JSON summary on stdout ({client, version, ok, checks[], created}) and exits 1 when
// any check failed, 2 on a setup error. Progress goes to stderr. The behaviours are those of
// https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines (rate limits)
// and https://developers.hubspot.com/docs/api-reference/error-handling (errors, 207).

import http from 'node:http';
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
const created = { single: null, batch: [], company: null };

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

// Retries are off unless `numberOfApiCallRetries` is set (the client's RetryDecorator), so each
// call is one request.
const client = new hubspot.Client({ accessToken: token, basePath: baseUrl });
const contacts = client.crm.contacts;
const lastname = 'Officialnode';

/**
 * Runs one step; a step that throws (an unexpected error answer, a client exception) is a failed
 * check under its name, and the next steps still run.
 */
async function step(name, fn) {
  try {
    const seen = await fn();
    check(name, seen.ok, seen.detail);
  } catch (e) {
    check(name, false, { error: String(e?.message ?? e).split('\n')[0], code: e?.code });
  }
}

// 1. Create (POST /crm/v3/objects/contacts → 201 SimplePublicObject).
await step('create', async () => {
  const one = await contacts.basicApi.create({
    properties: { email: 'node.create@example.com', firstname: 'Ada', lastname },
    associations: [],
  });
  created.single = one.id;
  return {
    ok: isDigits(one.id) && one.properties.hs_object_id === one.id
      && one.properties.email === 'node.create@example.com'
      && validDate(one.createdAt) && validDate(one.updatedAt) && one.archived === false,
    detail: { id: one.id, createdAt: one.createdAt, archived: one.archived },
  };
});

// 2. Batch create (201, status COMPLETE) and batch read with one missing id (207 + errors).
await step('batch_create', async () => {
  const batch = await contacts.batchApi.create({
    inputs: ['node.batch1@example.com', 'node.batch2@example.com'].map((email, i) => ({
      properties: { email, firstname: `B${i}`, lastname },
      associations: [],
    })),
  });
  created.batch = batch.results.map((r) => r.id).sort((a, b) => Number(a) - Number(b));
  return {
    ok: batch.status === 'COMPLETE' && batch.results.length === 2
      && created.batch.every(isDigits) && new Set(created.batch).size === 2
      && validDate(batch.startedAt) && validDate(batch.completedAt),
    detail: { status: batch.status, ids: created.batch },
  };
});

await step('batch_read_207', async () => {
  const missing = '999999999';
  const info = await contacts.batchApi.readWithHttpInfo({
    inputs: [...created.batch, missing].map((id) => ({ id })),
    properties: ['email', 'firstname'],
    propertiesWithHistory: [],
  });
  const read = info.data;
  const ids = read.results.map((r) => r.id).sort((a, b) => Number(a) - Number(b));
  const err = read.errors?.[0];
  return {
    ok: info.httpStatusCode === 207 && JSON.stringify(ids) === JSON.stringify(created.batch)
      && read.numErrors === 1 && err?.category === 'OBJECT_NOT_FOUND'
      && err?.context?.ids?.includes(missing)
      && read.results.every((r) => typeof r.properties.email === 'string'),
    detail: { httpStatus: info.httpStatusCode, ids, numErrors: read.numErrors,
      errorCategory: err?.category, errorIds: err?.context?.ids },
  };
});

// 3. Search with a filter (EQ on email), and one with a sort (total, results, paging).
await step('search_filter', async () => {
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
  return {
    ok: found.total === 1 && found.results.length === 1 && found.results[0].id === created.batch[1]
      && found.results[0].properties.email === 'node.batch2@example.com'
      && byLast.total === 3 && byLast.results.length === 2 && isDigits(byLast.paging?.next?.after),
    detail: { total: found.total, id: found.results[0]?.id, byLastnameTotal: byLast.total,
      nextAfter: byLast.paging?.next?.after },
  };
});

// Read by a unique property: the client puts the e-mail into the path percent-encoded
// (`node.create%40example.com?idProperty=email`), as any HTTP client does.
await step('read_by_id_property', async () => {
  const byEmail = await contacts.basicApi.getById('node.create@example.com', ['email'], undefined,
    undefined, false, 'email');
  return {
    ok: byEmail.id === created.single && byEmail.properties.email === 'node.create@example.com',
    detail: { id: byEmail.id },
  };
});

// A labelled association (v4 PUT with a body of types): the client, generated from HubSpot's
// spec, takes only 201 as success.
await step('association_labelled', async () => {
  const company = await client.crm.companies.basicApi.create({
    properties: { name: 'Node Client Co', domain: 'node.example.com' }, associations: [],
  });
  created.company = company.id;
  const labelled = await client.crm.associations.v4.basicApi.create('contacts', created.single,
    'companies', company.id, [{ associationCategory: 'HUBSPOT_DEFINED', associationTypeId: 279 }]);
  return {
    ok: String(labelled.fromObjectId) === created.single
      && String(labelled.toObjectId) === company.id && Array.isArray(labelled.labels),
    detail: { from: labelled.fromObjectId, to: labelled.toObjectId, labels: labelled.labels },
  };
});

// 4. A custom workflow action (https://developers.hubspot.com/docs/api/automation/custom-workflow-actions):
// the definitions API takes the developer API key as `hapikey`; the mock calls the action's
// URL (a server of this script answering BLOCK), and the client's CallbacksApi completes the
// blocked executions (v4: `outputFields` only, as the client sends).
const developerKey = process.env.HUBSPOT_MOCK_DEVELOPER_KEY ?? 'mock-developer-api-key';
const APP_ID = 1160452;
const actionServer = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
    res.end(JSON.stringify({ outputFields: { hs_execution_state: 'BLOCK' } }));
  });
});
await new Promise((resolve) => { actionServer.listen(0, '127.0.0.1', resolve); });
const actionUrl = `http://127.0.0.1:${actionServer.address().port}/action?client=node`;
let definitionId = null;

await step('action_definitions', async () => {
  const dev = new hubspot.Client({ developerApiKey: developerKey, basePath: baseUrl });
  const definitions = dev.automation.actions.definitionsApi;
  const def = await definitions.create(APP_ID, {
    actionUrl, published: true, objectTypes: ['CONTACT'], inputFields: [], outputFields: [],
    objectRequestOptions: { properties: ['email'] },
    labels: { en: { actionName: 'Node client action' } }, functions: [],
  });
  definitionId = def.id;
  const page = await definitions.getPage(APP_ID, 10);
  const patched = await definitions.update(def.id, APP_ID, { published: true });
  const read = await definitions.getById(def.id, APP_ID);
  return {
    ok: isDigits(def.id) && def.revisionId === '1' && def.actionUrl === actionUrl
      && def.published === true && page.results.some((d) => d.id === def.id)
      && patched.revisionId === '2' && read.revisionId === '2' && read.objectTypes[0] === 'CONTACT',
    detail: { id: def.id, revisionId: def.revisionId, listed: page.results.length,
      patchedRevision: patched.revisionId },
  };
});

/** The mock's view of one execution, once it is in `state` (10 s at most). */
async function executionIn(callbackId, state) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = (await admin('GET', `/__mock/workflows/executions?callbackId=${callbackId}`))
      .executions[0];
    if (found?.state === state) return found;
    if (Date.now() > deadline) throw new Error(`${callbackId} is ${found?.state}, not ${state}`);
    await new Promise((resolve) => { setTimeout(resolve, 20); });
  }
}

await step('callback_complete', async () => {
  if (!definitionId) throw new Error('no definition to enroll in');
  const { callbackIds } = await admin('POST', '/__mock/workflows/enroll',
    { definitionId, objectType: 'CONTACT', objectId: created.single, count: 2 });
  const blocked = await executionIn(callbackIds[0], 'blocked');
  await executionIn(callbackIds[1], 'blocked');
  const callbacks = client.automation.actions.callbacksApi;
  await callbacks.complete(callbackIds[0],
    { outputFields: { hs_execution_state: 'SUCCESS', note: 'single' } });
  await callbacks.completeBatch({ inputs: [
    { callbackId: callbackIds[1], outputFields: { hs_execution_state: 'FAIL_CONTINUE' } }] });
  const one = await executionIn(callbackIds[0], 'completed');
  const two = await executionIn(callbackIds[1], 'completed');
  return {
    ok: blocked.request.object.properties.email === 'node.create@example.com'
      && one.executionState === 'SUCCESS' && one.outputs.note === 'single'
      && two.executionState === 'FAIL_CONTINUE' && two.finishedBy === 'batchCallback',
    detail: { callbackIds, states: [one.executionState, two.executionState] },
  };
});
actionServer.closeAllConnections();
actionServer.close();

// 5a. An injected 429 with retries off: one request, the error carries status and body.
await step('injected_429_surfaced', async () => {
  await admin('POST', '/__mock/faults', { next: [{ status: 429 }] });
  const before = await mockRequests();
  const e = await expectApiError(() => contacts.basicApi.getById(created.single));
  const sent = (await mockRequests()) - before;
  return {
    ok: e?.code === 429 && e.body?.policyName === 'TEN_SECONDLY_ROLLING'
      && e.body?.errorType === 'RATE_LIMIT' && sent === 1,
    detail: { status: e?.code, policyName: e?.body?.policyName, errorType: e?.body?.errorType,
      requestsSent: sent },
  };
});

// 5b. The client's own retry on the search limit (its RetryDecorator matches the body's message
// "You have reached your secondly limit." and waits 1 s): the mock's search 429 must be
// recognised, so the search succeeds on the second request.
await step('search_429_retried_by_client', async () => {
  const retrying = new hubspot.Client({ accessToken: token, basePath: baseUrl, numberOfApiCallRetries: 2 });
  await admin('POST', '/__mock/faults', { next: [{ status: 429, policy: 'SECONDLY' }] });
  const before = await mockRequests();
  const retried = await retrying.crm.contacts.searchApi.doSearch({
    filterGroups: [{ filters: [{ propertyName: 'email', operator: 'EQ', value: 'node.create@example.com' }] }],
    properties: ['email'], sorts: [], limit: 1, after: '0',
  });
  const sent = (await mockRequests()) - before;
  return { ok: retried.total === 1 && sent === 2, detail: { total: retried.total, requestsSent: sent } };
});

// 5c. A real 429 from the burst limiter: read the window from the headers of a success,
// spend what remains, and the next call is refused with the headers at 0 and the documented
// 429 body (usage guidelines above).
let max = 0;
let remaining = -1;
await step('rate_limit_headers_on_success', async () => {
  const info = await contacts.basicApi.getByIdWithHttpInfo(created.single);
  const h = info.headers;
  max = Number(h[`${RL}max`]);
  remaining = Number(h[`${RL}remaining`]);
  return {
    ok: info.httpStatusCode === 200 && Number.isInteger(max) && max > 0
      && Number.isInteger(remaining) && remaining >= 0 && remaining < max
      && isDigits(h[`${RL}interval-milliseconds`]) && isDigits(h[`${RL}daily`])
      && isDigits(h[`${RL}daily-remaining`]),
    detail: { max, remaining, intervalMs: h[`${RL}interval-milliseconds`], daily: h[`${RL}daily`],
      dailyRemaining: h[`${RL}daily-remaining`] },
  };
});

await step('limiter_429_with_headers', async () => {
  if (!(max > 0 && max <= 1000)) throw new Error(`unusable X-HubSpot-RateLimit-Max: ${max}`);
  let ok = 0;
  let limited = null;
  for (let i = 0; i <= max && !limited; i += 1) {
    limited = await expectApiError(() => contacts.basicApi.getById(created.single));
    if (!limited) ok += 1;
  }
  const lh = limited?.headers ?? {};
  return {
    ok: limited?.code === 429 && ok === remaining && lh[`${RL}remaining`] === '0'
      && Number(lh[`${RL}max`]) === max && isDigits(lh[`${RL}interval-milliseconds`])
      && limited.body?.policyName === 'TEN_SECONDLY_ROLLING'
      && limited.body?.errorType === 'RATE_LIMIT',
    detail: { status: limited?.code, succeededBefore: ok, announcedRemaining: remaining,
      remaining: lh[`${RL}remaining`], max: lh[`${RL}max`],
      intervalMs: lh[`${RL}interval-milliseconds`], policyName: limited?.body?.policyName },
  };
});

const ok = checks.length > 0 && checks.every((c) => c.ok);
process.stdout.write(`${JSON.stringify({ client: '@hubspot/api-client', version: VERSION, ok, checks, created })}\n`);
process.exit(ok ? 0 : 1);
