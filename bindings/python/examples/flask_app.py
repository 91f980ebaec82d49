"""A HubSpot webhook endpoint in Flask with hubspot_edge: verify, parse, filter, dedupe.

    HUBSPOT_CLIENT_SECRET=… flask --app examples/flask_app.py run

Behind a proxy or tunnel set PUBLIC_BASE_URL to the origin HubSpot calls
(``https://hooks.example.com``): HubSpot signs the URL it called, not the one Flask sees.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request

import hubspot_edge as he

app = Flask(__name__)
SECRET = os.environ.get("HUBSPOT_CLIENT_SECRET", "")
FILTER = he.Filter(os.environ.get("FILTER_RULES", "{}"))
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL")

# What the handler received, by dedupe key (a real one would queue them).
RECEIVED: dict[str, dict] = {}


def signed_url() -> str:
    if PUBLIC_BASE_URL:
        return PUBLIC_BASE_URL.rstrip("/") + request.full_path.rstrip("?")
    return request.url


@app.post("/webhooks/hubspot")
def hubspot_webhook():
    body = request.get_data()
    try:
        he.verify_signature(
            SECRET, method=request.method, url=signed_url(), headers=request.headers, body=body
        )
    except he.SignatureError as e:
        # The code only (signature_mismatch, timestamp_expired, …): never echo the request.
        return jsonify(error={"code": e.code}), 401
    try:
        events = he.parse_events(body, FILTER)
    except he.EventError as e:
        return jsonify(error={"code": e.code}), 400
    kept = [e for e in events if e.get("verdict") == "keep"]
    for e in kept:
        # HubSpot retries a batch it did not see acknowledged: the key is the same each time.
        RECEIVED.setdefault(e["dedupe_key"], e["event"])
    return jsonify(accepted=len(kept), dropped=len(events) - len(kept))
