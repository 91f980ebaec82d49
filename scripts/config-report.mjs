// Prints the Worker's configuration problems as its /healthz reports them (keys, codes and the
// part each one stops; never values): what scripts/run.sh shows once the Worker answers.
//
// Usage: node scripts/config-report.mjs BASE_URL [TIMEOUT_SECS [WATCH_PID]]
// Polls BASE_URL/healthz until the Worker answers (200 {"status":"ok"}, or 503
// {"status":"misconfigured","problems":[…]}) or TIMEOUT_SECS (default 600) pass; with WATCH_PID
// (wrangler's, from run.sh), it stops quietly as soon as that process is gone.
// Exit status: 0 configuration ok, 1 misconfigured (problems printed), 2 no answer in time,
// 3 the watched process is gone, 64 usage.

const [base, timeoutArg = "600", watchArg] = process.argv.slice(2);
const watchPid = watchArg === undefined ? null : Number(watchArg);
if (!base || !(Number(timeoutArg) > 0) || (watchPid !== null && !(watchPid > 0))) {
  console.error("usage: node scripts/config-report.mjs BASE_URL [TIMEOUT_SECS [WATCH_PID]]");
  process.exit(64);
}

/** Whether the watched process (wrangler) still runs. */
function watchedAlive() {
  if (watchPid === null) return true;
  try {
    process.kill(watchPid, 0);
    return true;
  } catch (e) {
    return e.code === "EPERM";
  }
}
const url = new URL("/healthz", base).toString();
const deadline = Date.now() + 1000 * Number(timeoutArg);

// What a problem in each part means while it lasts (README "Configuration").
const EFFECT = {
  ingress: "webhooks are answered 503 and HubSpot retries them (up to 10 times over 24 h)",
  forwarding:
    "webhooks are accepted and queued; events are retried, then dead-lettered as config_invalid (re-drive them once fixed)",
  enrichment:
    "webhooks are accepted and queued; events are retried, then dead-lettered as config_invalid (re-drive them once fixed)",
  hubspot_api: "HubSpot API calls (/admin/hubspot) answer config_invalid",
  dead_letters: "dead letters stay queued (retried, never dropped) until it is fixed",
  admin: "the admin API (dead letters, re-drive) is unavailable",
};

/** The Worker's answer, or null while it is not up (wrangler still building, starting…). */
async function health() {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
    const body = JSON.parse(await r.text());
    if (r.status === 200 && body.status === "ok") return { problems: [] };
    if (r.status === 503 && body.status === "misconfigured" && Array.isArray(body.problems)) {
      return { problems: body.problems };
    }
  } catch {
    // Not up yet, or not the Worker's JSON.
  }
  return null;
}

function report(problems) {
  if (problems.length === 0) {
    console.log("==> configuration ok");
    return;
  }
  const n = problems.length;
  console.log(`==> configuration: ${n} problem${n === 1 ? "" : "s"} (set them in .dev.vars, then restart):`);
  const width = (k) => Math.max(...problems.map((p) => String(p[k]).length));
  const [wp, wk] = [width("part"), width("key")];
  for (const p of problems) {
    console.log(`      ${String(p.part).padEnd(wp)}  ${String(p.key).padEnd(wk)}  ${p.code}`);
  }
  for (const part of [...new Set(problems.map((p) => p.part))]) {
    if (EFFECT[part]) console.log(`    ${part}: ${EFFECT[part]}`);
  }
  console.log("    the Worker's config_invalid log lines give each key's accepted values");
}

for (;;) {
  const answer = await health();
  if (answer) {
    report(answer.problems);
    process.exit(answer.problems.length === 0 ? 0 : 1);
  }
  if (!watchedAlive()) process.exit(3);
  if (Date.now() > deadline) {
    console.log(`==> configuration: no answer from ${url} within ${timeoutArg} s`);
    process.exit(2);
  }
  await new Promise((resolve) => setTimeout(resolve, 250));
}
