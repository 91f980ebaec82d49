// The dashboard in a real browser (issue 12 §4), driven by tests/e2e/dashboard.rs: Debian's
// headless Chromium through puppeteer-core (no browser download), axe-core for WCAG 2.1 A/AA.
//
// Env: DASHBOARD_BASE (the Worker's URL), ADMIN_TOKEN, DEAD_LETTER_ID (a letter to re-drive),
// CHROMIUM (default /usr/bin/chromium). Prints one JSON line with what it saw; the Rust scenario
// judges it. Exits non-zero when a step cannot be done (a missing browser or package included).
import { createRequire } from 'node:module';
import puppeteer from 'puppeteer-core';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const BASE = process.env.DASHBOARD_BASE;
const TOKEN = process.env.ADMIN_TOKEN;
const LETTER = process.env.DEAD_LETTER_ID;
const WCAG = { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } };
const STEP_MS = 30000;

if (!BASE || !TOKEN || !LETTER) throw new Error('DASHBOARD_BASE, ADMIN_TOKEN and DEAD_LETTER_ID are required');
setTimeout(() => { console.error('the browser test took over 150 s'); process.exit(3); }, 150000).unref();

async function axe(page) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate((opts) => window.axe.run(document, opts), WCAG);
  return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, targets: v.nodes.map((n) => n.target.join(' ')) }));
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim());

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'],
});
const out = { consoleErrors: [] };
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(STEP_MS);
  // axe-core is injected as an inline script, which the page's Content-Security-Policy
  // (script-src 'self') refuses: bypass it for the test only.
  await page.setBypassCSP(true);
  let phase = 'load';
  // A refused request shows as a console error naming no URL: the location has it. The one
  // expected refusal is GET /admin/sync answering 404 `sync_off` on a Worker without
  // SYNC_OBJECT_TYPES (the page then says the sync is off); it is reported apart.
  out.syncOff = 0;
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const url = (m.location() && m.location().url) || '';
    if (phase === 'dashboard' && url.endsWith('/admin/sync') && m.text().includes('404')) out.syncOff++;
    else out.consoleErrors.push(`${phase}: ${m.text()} ${url}`);
  });
  page.on('pageerror', (e) => out.consoleErrors.push(`${phase}: uncaught ${e.message}`));
  page.on('dialog', (d) => d.accept());

  // /admin redirects to the page; the login form comes first.
  await page.goto(`${BASE}/admin`, { waitUntil: 'load' });
  out.landedOn = new URL(page.url()).pathname;
  await page.waitForSelector('#token', { visible: true });

  // A wrong token: the API answers 401 and the form comes back with an error. Chromium logs
  // each refused request as a console error ("Failed to load resource … 401"): expected here,
  // so this phase's console errors are kept apart.
  phase = 'wrong-token';
  await page.type('#token', 'not-the-admin-token');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('login-error').textContent.includes('401'));
  out.loginVisibleAfter401 = await page.$eval('#login', (e) => !e.hidden);
  out.loginError = await text(page, '#login-error');
  out.axeLogin = await axe(page);
  out.wrongTokenConsole = out.consoleErrors.splice(0).length;

  // The right token, typed and submitted with the keyboard.
  phase = 'dashboard';
  await page.focus('#token');
  await page.keyboard.type(TOKEN);
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.getElementById('updated').textContent.startsWith('Updated'));
  out.eventsReceived = Number(await text(page, '#sum-events-received'));
  out.summary = await page.$$eval('#summary tbody tr', (rows) => rows.map((r) => r.textContent));
  out.chartDescriptions = await page.$$eval('.desc', (ps) => ps.map((p) => p.textContent));
  out.charts = await page.$$eval('.charts canvas', (cs) => cs.length);
  out.syncText = await text(page, '#sync-none');
  // The gauges (current state) and the workflow executions waiting in a portal, typed in.
  out.gauges = await page.$$eval('#gauges tbody tr', (rows) => rows.map((r) => [r.dataset.gauge || '', r.cells[2].textContent]));
  out.waitingPrompt = await text(page, '#wf-status');
  await page.type('#wf-portal', '33');
  await page.click('#wf-form button[type=submit]');
  await page.waitForFunction(() => document.getElementById('wf-status').textContent.includes('waiting in portal 33'));
  out.waitingStatus = await text(page, '#wf-status');

  // The dead letter: filtered by its reason, then pages until its row shows.
  const row = `#dead-letters tr[data-id="${LETTER}"]`;
  await page.type('#dl-reason', 'retries_exhausted');
  await page.click('#dl-filter button[type=submit]');
  await page.waitForFunction(() => document.getElementById('dl-status').textContent.includes('retries_exhausted'));
  for (let i = 0; i < 30 && !(await page.$(row)); i++) {
    if (!(await page.$eval('#dl-more', (b) => !b.hidden))) break;
    const before = await page.$$eval('#dead-letters tbody tr', (r) => r.length);
    await page.click('#dl-more');
    await page.waitForFunction((n) => document.querySelectorAll('#dead-letters tbody tr').length > n || document.getElementById('dl-more').hidden, {}, before);
  }
  await page.waitForSelector(row);
  // View it: reason and metadata, never the payload.
  await page.click(`${row} button[aria-label^="View"]`);
  await page.waitForSelector('#dl-detail:not([hidden])');
  out.detail = await text(page, '#dl-fields');
  out.axeDashboard = await axe(page);
  // Re-drive it with the keyboard.
  await page.focus(`${row} button[aria-label^="Re-drive"]`);
  await page.keyboard.press('Enter');
  await page.waitForFunction((id) => document.getElementById('dl-status').textContent.includes(`Re-drove dead letter ${id}`), {}, LETTER);
  out.redriveStatus = await text(page, '#dl-status');
  out.rowGone = (await page.$(row)) === null;
  out.loadError = await text(page, '#load-error');
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
