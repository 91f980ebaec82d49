// A HubSpot webhook endpoint as a plain fetch handler (Cloudflare Workers' module syntax; the
// same `fetch(request, env)` runs under Deno.serve, Bun.serve or Hono as `app.post(path, (c) =>
// handler.fetch(c.req.raw, c.env))`): verify, parse, dedupe, answer fast.
//
// Behind a proxy set PUBLIC_BASE_URL: HubSpot signs the URL it called, not the one you see.
// (On Cloudflare Workers, which do not compile wasm from bytes, use the Worker in this repository.)
import { verifyRequest, parseEvents, SignatureError, EventError } from "../index.js";

const json = (status, value) => new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });

export default {
  async fetch(request, env) {
    if (request.method !== "POST") return json(405, { error: { code: "method_not_allowed" } });
    const url = env.PUBLIC_BASE_URL ? env.PUBLIC_BASE_URL + new URL(request.url).pathname + new URL(request.url).search : request.url;
    let body;
    try {
      ({ body } = await verifyRequest(request, { secret: env.HUBSPOT_CLIENT_SECRET, url }));
    } catch (e) {
      // The code only (signature_mismatch, timestamp_expired, …): never echo the request.
      if (e instanceof SignatureError) return json(401, { error: { code: e.code } });
      throw e;
    }
    let events;
    try {
      events = parseEvents(body);
    } catch (e) {
      if (e instanceof EventError) return json(400, { error: { code: e.code } });
      throw e;
    }
    const good = events.filter((e) => !e.error);
    // Hand each to your queue keyed by e.dedupeKey (the same on HubSpot's retries); answer within
    // HubSpot's 5 s.
    return json(200, { accepted: good.length, invalid: events.length - good.length });
  },
};
