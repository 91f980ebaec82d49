// The operator dashboard (README, "Operating it", "Dashboard"). No framework: the DOM, fetch and
// uPlot (https://github.com/leeoniya/uPlot) for the charts. Every number comes from the admin
// API, called with the admin token kept in this tab's sessionStorage; a 401 signs out.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const TOKEN_KEY = 'hubspot-edge-admin-token';
const REFRESH_MS = 15000;
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Calls the admin API; throws Unauthorized on 401, Error with the API's code otherwise. */
async function api(path, method = 'GET') {
  const r = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${token()}` },
    cache: 'no-store',
  });
  if (r.status === 401) throw new Unauthorized('the admin token was refused');
  const type = r.headers.get('content-type') || '';
  const body = type.includes('json') ? await r.json() : await r.text();
  if (!r.ok) {
    const code = body && body.error ? (body.error.code || body.error) : r.status;
    const err = new Error(`${method} ${path}: ${code}`);
    err.status = r.status;
    err.code = code;
    throw err;
  }
  return body;
}

// ---- metrics: pure helpers over GET /admin/metrics.json ----

const label = (series, key) => {
  const pair = (series.labels || []).find((l) => l[0] === key);
  return pair ? pair[1] : undefined;
};

/** Sum of the counts of `name` in one bucket whose labels match `where`. */
function count(bucket, name, where = {}) {
  let n = 0;
  for (const s of bucket.metrics.series || []) {
    if (s.name !== name || !s.value || s.value.count === undefined) continue;
    if (Object.entries(where).every(([k, v]) => label(s, k) === v)) n += s.value.count;
  }
  return n;
}

/** The merged distribution of `name` over the given buckets: counts per bound. */
function distribution(buckets, name) {
  let counts = null;
  for (const b of buckets) {
    for (const s of b.metrics.series || []) {
      if (s.name !== name || !s.value || !s.value.distribution) continue;
      const c = s.value.distribution.counts || [];
      if (!counts) counts = new Array(c.length).fill(0);
      c.forEach((x, i) => { counts[i] += x; });
    }
  }
  return counts;
}

/** The q quantile in ms, interpolated inside its bucket as core's Distribution::quantile. */
export function quantile(counts, bounds, q) {
  if (!counts) return null;
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  let below = 0;
  for (let i = 0; i < counts.length; i++) {
    const n = counts[i];
    if (n > 0 && below + n >= rank) {
      if (i >= bounds.length) return bounds[bounds.length - 1];
      const lo = i === 0 ? 0 : bounds[i - 1];
      const within = Math.min(Math.max((rank - below) / n, 0), 1);
      return lo + within * (bounds[i] - lo);
    }
    below += n;
  }
  return bounds[bounds.length - 1];
}

const pct = (num, den) => (den > 0 ? (100 * num) / den : null);
const fmt = (x, digits = 0) => (x === null || x === undefined || Number.isNaN(x) ? 'n/a' : Number(x).toFixed(digits));
const time = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');

/** Per-bucket rows and window totals from a metrics.json answer. */
export function digest(answer) {
  const buckets = answer.buckets || [];
  const bounds = answer.bucketBoundsMs || [];
  const rows = buckets.map((b) => {
    const dist = distribution([b], 'delivery_latency');
    const delivered = count(b, 'deliveries', { result: 'success' });
    const failed = count(b, 'deliveries', { result: 'failure' });
    const accepted = count(b, 'webhook_requests', { outcome: 'accepted' });
    const rejected = count(b, 'webhook_requests', { outcome: 'rejected' });
    return {
      t: b.startMs / 1000,
      received: count(b, 'events', { stage: 'received' }),
      queued: count(b, 'events', { stage: 'queued' }),
      deliveryErr: pct(failed, delivered + failed),
      webhookErr: pct(rejected, accepted + rejected),
      p50: quantile(dist, bounds, 0.5),
      p95: quantile(dist, bounds, 0.95),
      p99: quantile(dist, bounds, 0.99),
      net: count(b, 'queue_enqueued') - count(b, 'queue_settled'),
      delivered, failed, accepted, rejected,
    };
  });
  const sum = (k) => rows.reduce((a, r) => a + r[k], 0);
  const dist = distribution(buckets, 'delivery_latency');
  const totals = {
    received: sum('received'),
    queued: sum('queued'),
    filtered: buckets.reduce((a, b) => a + count(b, 'events', { stage: 'filtered' }), 0),
    duplicate: buckets.reduce((a, b) => a + count(b, 'events', { stage: 'duplicate' }), 0),
    delivered: sum('delivered'),
    failed: sum('failed'),
    accepted: sum('accepted'),
    rejected: sum('rejected'),
    deadLettered: buckets.reduce((a, b) => a + count(b, 'dead_letters'), 0),
    p50: quantile(dist, bounds, 0.5),
    p95: quantile(dist, bounds, 0.95),
    p99: quantile(dist, bounds, 0.99),
  };
  totals.deliveryErr = pct(totals.failed, totals.delivered + totals.failed);
  totals.webhookErr = pct(totals.rejected, totals.accepted + totals.rejected);
  return { rows, totals };
}

// ---- rendering ----

function cell(tr, text, header = false) {
  const c = document.createElement(header ? 'th' : 'td');
  if (header) c.scope = 'row';
  c.textContent = text;
  tr.appendChild(c);
  return c;
}

function fillSummary(t) {
  const body = $('summary').tBodies[0];
  body.replaceChildren();
  const items = [
    ['events-received', 'Events received', fmt(t.received)],
    ['events-queued', 'Events queued', fmt(t.queued)],
    ['events-filtered', 'Events filtered out', fmt(t.filtered)],
    ['events-duplicate', 'Duplicate events', fmt(t.duplicate)],
    ['webhooks', 'Webhook requests accepted / rejected', `${t.accepted} / ${t.rejected}`],
    ['webhook-error-rate', 'Webhook error rate', `${fmt(t.webhookErr, 1)} %`],
    ['deliveries', 'Deliveries succeeded / failed', `${t.delivered} / ${t.failed}`],
    ['delivery-error-rate', 'Delivery error rate', `${fmt(t.deliveryErr, 1)} %`],
    ['latency', 'Delivery latency p50 / p95 / p99 (ms)', `${fmt(t.p50)} / ${fmt(t.p95)} / ${fmt(t.p99)}`],
    ['dead-lettered', 'Letters dead-lettered', fmt(t.deadLettered)],
  ];
  for (const [id, name, value] of items) {
    const tr = document.createElement('tr');
    cell(tr, name, true);
    cell(tr, value).id = `sum-${id}`;
    body.appendChild(tr);
  }
}

const charts = {};
const PALETTE = ['#0b5cad', '#b3261e', '#1b7f3b', '#6a3d9a'];

function chart(id, rows, series, describe) {
  const el = $(id);
  const data = [rows.map((r) => r.t), ...series.map(([key]) => rows.map((r) => r[key]))];
  const width = Math.max(280, Math.min(560, el.clientWidth || 520));
  if (charts[id]) charts[id].destroy();
  charts[id] = new uPlot({
    width,
    height: 200,
    legend: { show: false },
    cursor: { show: false },
    series: [{}, ...series.map(([, name], i) => ({ label: name, stroke: PALETTE[i], width: 2, spanGaps: true }))],
    axes: [{ stroke: '#1a1a1a' }, { stroke: '#1a1a1a' }],
  }, data, el);
  // The text alternative: the key with the colours and the numbers the chart draws.
  const last = (key) => {
    for (let i = rows.length - 1; i >= 0; i--) if (rows[i][key] !== null) return rows[i][key];
    return null;
  };
  const max = (key) => rows.reduce((m, r) => (r[key] !== null && (m === null || r[key] > m) ? r[key] : m), null);
  $(`${id}-desc`).textContent = series
    .map(([key, name], i) => `${name} (${['blue', 'red', 'green', 'purple'][i]}): latest ${fmt(last(key), 1)}, highest ${fmt(max(key), 1)}`)
    .join('; ') + `. ${describe}`;
}

function fillAlerts(alerts) {
  const rules = Object.entries((alerts && alerts.rules) || {});
  const body = $('alerts').tBodies[0];
  body.replaceChildren();
  const firing = rules.filter(([, s]) => s.firing);
  $('alerts-none').hidden = firing.length > 0;
  $('alerts').hidden = rules.length === 0;
  for (const [name, s] of rules) {
    const tr = document.createElement('tr');
    cell(tr, name, true);
    const state = cell(tr, s.firing ? 'FIRING' : 'ok');
    if (s.firing) state.className = 'firing';
    cell(tr, s.sinceMs ? time(s.sinceMs) : '');
    cell(tr, s.value === undefined ? '' : fmt(s.value, 3));
    body.appendChild(tr);
  }
}

/** Queue depth from the OpenMetrics totals (`hubspot_edge_queue_depth{queue=…}`). */
function fillQueues(text) {
  const body = $('queues').tBodies[0];
  body.replaceChildren();
  const re = /^hubspot_edge_queue_depth\{queue="([^"]*)"\} (-?[0-9.e+]+)$/gm;
  let m;
  let any = false;
  while ((m = re.exec(text)) !== null) {
    const tr = document.createElement('tr');
    cell(tr, m[1], true);
    cell(tr, m[2]);
    body.appendChild(tr);
    any = true;
  }
  if (!any) {
    const tr = document.createElement('tr');
    cell(tr, 'none counted yet', true);
    cell(tr, '0');
    body.appendChild(tr);
  }
}

/** The gauges of the OpenMetrics totals: one row per series. */
const GAUGES = {
  hubspot_edge_dead_letter_store_size: 'Dead letters in the store',
  hubspot_edge_hubspot_daily_used_permille: 'HubSpot daily budget used (per mille)',
  hubspot_edge_sync_cursor_lag_seconds: 'Sync cursor lag (s)',
  hubspot_edge_actions_blocked: 'Blocked workflow executions',
};

function fillGauges(text) {
  const body = $('gauges').tBodies[0];
  body.replaceChildren();
  const re = /^(hubspot_edge_[a-z_]+)(?:\{([^}]*)\})? (-?[0-9.e+]+)$/gm;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (!GAUGES[m[1]]) continue;
    const tr = document.createElement('tr');
    tr.dataset.gauge = m[1];
    cell(tr, GAUGES[m[1]], true);
    cell(tr, (m[2] || '').replace(/"/g, ''));
    cell(tr, m[3]);
    body.appendChild(tr);
  }
  if (!body.rows.length) {
    const tr = document.createElement('tr');
    cell(tr, 'none set yet', true);
    cell(tr, '');
    cell(tr, '');
    body.appendChild(tr);
  }
}

/** Executions waiting in one portal (GET /admin/actions/executions/{portal}). */
async function loadWaiting() {
  const portal = $('wf-portal').value.trim();
  const table = $('wf');
  if (!/^[0-9]+$/.test(portal)) {
    table.hidden = true;
    $('wf-status').textContent = 'Enter a portal id to list its waiting executions.';
    return;
  }
  const r = await api(`/admin/actions/executions/${portal}`);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const x of r.executions || []) {
    const tr = document.createElement('tr');
    tr.dataset.callbackId = x.callbackId;
    cell(tr, x.callbackId, true);
    cell(tr, x.action || '');
    cell(tr, x.state || '');
    cell(tr, fmt(x.ageSecs));
    cell(tr, x.expiresMs ? time(x.expiresMs) : '');
    body.appendChild(tr);
  }
  table.hidden = body.rows.length === 0;
  $('wf-status').textContent = `${body.rows.length} execution(s) waiting in portal ${portal}${r.more ? ' (the oldest 100 shown)' : ''}.`;
}

function fillSync(answer, error) {
  const table = $('sync');
  const none = $('sync-none');
  if (error) {
    table.hidden = true;
    none.hidden = false;
    none.textContent = error.code === 'sync_off' ? 'The outbound sync is off (SYNC_OBJECT_TYPES is unset).' : `Sync state unavailable: ${error.message}`;
    return;
  }
  const types = answer.types || [];
  const keys = [...new Set(types.flatMap((t) => Object.keys(t).filter((k) => typeof t[k] !== 'object' || t[k] === null)))];
  const head = document.createElement('tr');
  for (const k of keys) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = k;
    head.appendChild(th);
  }
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const t of types) {
    const tr = document.createElement('tr');
    keys.forEach((k, i) => cell(tr, t[k] === undefined || t[k] === null ? '' : String(t[k]), i === 0));
    body.appendChild(tr);
  }
  table.hidden = types.length === 0;
  none.hidden = types.length > 0;
  none.textContent = 'No object type is synced.';
}

// ---- dead letters ----

let dlCursor = null;
const dlStatus = (text) => { $('dl-status').textContent = text; };

function button(text, name, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = text;
  b.setAttribute('aria-label', name);
  b.addEventListener('click', onClick);
  return b;
}

async function loadDeadLetters(append = false) {
  const reason = $('dl-reason').value.trim();
  const q = new URLSearchParams({ limit: '100' });
  if (reason) q.set('reason', reason);
  if (append && dlCursor) q.set('cursor', dlCursor);
  const page = await api(`/admin/dead-letters?${q}`);
  const body = $('dead-letters').tBodies[0];
  if (!append) body.replaceChildren();
  const reasons = new Set([...$('dl-reasons').options].map((o) => o.value));
  for (const item of page.items) {
    const tr = document.createElement('tr');
    tr.dataset.id = item.id;
    cell(tr, item.id, true);
    cell(tr, item.kind || '');
    cell(tr, item.reason || '');
    cell(tr, item.attempts === undefined ? '' : String(item.attempts));
    cell(tr, item.createdAt || '');
    const actions = cell(tr, '');
    actions.append(
      button('View', `View dead letter ${item.id}`, () => run(() => viewLetter(item.id))),
      button('Re-drive', `Re-drive dead letter ${item.id}`, () => run(() => redriveOne(item.id))),
      button('Delete', `Delete dead letter ${item.id}`, () => run(() => deleteLetter(item.id))),
    );
    body.appendChild(tr);
    if (item.reason) reasons.add(item.reason);
  }
  $('dl-reasons').replaceChildren(...[...reasons].sort().map((r) => Object.assign(document.createElement('option'), { value: r })));
  dlCursor = page.cursor;
  $('dl-more').hidden = !dlCursor;
  if (!append) dlStatus(`${body.rows.length} dead letter(s) listed${reason ? ` with reason ${reason}` : ''}${dlCursor ? ' (more to load)' : ''}.`);
}

async function viewLetter(id) {
  const letter = await api(`/admin/dead-letters/${encodeURIComponent(id)}`);
  const dl = $('dl-fields');
  dl.replaceChildren();
  for (const [k, v] of Object.entries(letter)) {
    if (k === 'payload' || k === 'payloadBase64') continue;
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = typeof v === 'object' ? JSON.stringify(v) : String(v);
    dl.append(dt, dd);
  }
  const dt = document.createElement('dt');
  dt.textContent = 'payload';
  const dd = document.createElement('dd');
  dd.textContent = letter.payload !== undefined || letter.payloadBase64 !== undefined ? 'kept (not shown)' : 'none';
  dl.append(dt, dd);
  $('dl-detail-title').textContent = `Dead letter ${id}`;
  $('dl-detail').hidden = false;
  $('dl-detail-title').focus();
}

async function redriveOne(id) {
  const r = await api(`/admin/dead-letters/${encodeURIComponent(id)}/redrive`, 'POST');
  await loadDeadLetters();
  dlStatus(`Re-drove dead letter ${id} (${r.queued} queued).`);
}

async function deleteLetter(id) {
  if (!window.confirm(`Delete dead letter ${id}? It cannot be re-driven afterwards.`)) return;
  await api(`/admin/dead-letters/${encodeURIComponent(id)}`, 'DELETE');
  await loadDeadLetters();
  dlStatus(`Deleted dead letter ${id}.`);
}

/** Re-drive all (matching the reason filter), a bounded slice per call until the cursor ends. */
async function redriveAll() {
  const reason = $('dl-reason').value.trim();
  let cursor = null;
  let redriven = 0;
  let skipped = 0;
  do {
    const q = new URLSearchParams();
    if (reason) q.set('reason', reason);
    if (cursor) q.set('cursor', cursor);
    const r = await api(`/admin/dead-letters/redrive?${q}`, 'POST');
    redriven += r.redriven;
    skipped += (r.skipped || []).length;
    cursor = r.cursor;
    dlStatus(`Re-driving: ${redriven} so far…`);
  } while (cursor);
  await loadDeadLetters();
  dlStatus(`Re-drove ${redriven} dead letter(s); ${skipped} could not be re-driven and stay listed.`);
}

// ---- the page ----

/** Reloads the metrics panels; `withLetters` also reloads the dead-letter list (not on the
 * timer, so that a list the operator is paging through stays put). */
async function refresh(withLetters = true) {
  const span = $('span').value;
  const [answer, text] = await Promise.all([api(`/admin/metrics.json?span=${span}`), api('/admin/metrics')]);
  const { rows, totals } = digest(answer);
  fillSummary(totals);
  const per = span === 'hour' ? 'minute' : 'hour';
  chart('c-throughput', rows, [['received', 'received'], ['queued', 'queued']], `Events per ${per}.`);
  chart('c-errors', rows, [['deliveryErr', 'delivery failures / all deliveries'], ['webhookErr', 'rejected / all webhook requests']], 'Percent; the alert threshold is 5 %.');
  chart('c-latency', rows, [['p50', 'p50'], ['p95', 'p95'], ['p99', 'p99']], 'Milliseconds, estimated within histogram buckets.');
  chart('c-queue', rows, [['net', 'enqueued − settled']], `Messages per ${per}.`);
  fillAlerts(answer.alerts);
  fillQueues(typeof text === 'string' ? text : '');
  fillGauges(typeof text === 'string' ? text : '');
  try {
    const sync = await api('/admin/sync');
    fillSync(sync);
    // The synced portal is the likeliest one to run workflow actions.
    if (!$('wf-portal').value && sync.portalId) $('wf-portal').value = String(sync.portalId);
  } catch (e) {
    if (e instanceof Unauthorized) throw e;
    fillSync(null, e);
  }
  await loadWaiting();
  if (withLetters) await loadDeadLetters();
  $('updated').textContent = `Updated ${time(answer.nowMs || Date.now())}`;
  $('load-error').textContent = '';
}

/** Runs an action; a 401 signs out with a message, another error is shown. */
async function run(action) {
  try {
    await action();
  } catch (e) {
    if (e instanceof Unauthorized) {
      signOut('The admin token was refused (401). Enter it again.');
    } else {
      $('load-error').textContent = `Error: ${e.message}`;
    }
  }
}

let timer = null;

function showDashboard() {
  $('login').hidden = true;
  $('dashboard').hidden = false;
  $('controls').hidden = false;
  run(refresh);
  clearInterval(timer);
  timer = setInterval(() => run(() => refresh(false)), REFRESH_MS);
}

function signOut(message = '') {
  clearInterval(timer);
  sessionStorage.removeItem(TOKEN_KEY);
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').value = '';
  $('token').focus();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('token').value);
  $('token').value = '';
  $('login-error').textContent = '';
  showDashboard();
});
$('signout').addEventListener('click', () => signOut());
$('refresh').addEventListener('click', () => run(() => refresh()));
$('span').addEventListener('change', () => run(() => refresh(false)));
$('dl-filter').addEventListener('submit', (ev) => { ev.preventDefault(); run(() => loadDeadLetters()); });
$('dl-more').addEventListener('click', () => run(() => loadDeadLetters(true)));
$('wf-form').addEventListener('submit', (ev) => { ev.preventDefault(); run(loadWaiting); });
$('dl-redrive-all').addEventListener('click', () => run(redriveAll));
$('dl-detail-title').tabIndex = -1;

if (token()) showDashboard();
else $('token').focus();
