"""HubSpot's official Python client (hubspot-api-client, pinned in requirements.txt) against the mock.

A create, a batch create and a batch read (with a missing id: 207), a search with a filter, a read
by email (``idProperty``), a labelled association, a custom workflow action (definitions with the
developer API key, a blocked execution completed through the client's CallbacksApi, single and
batch), and 429s (injected through
``POST /__mock/faults``, and a real one from the burst limiter) with what the client surfaces of
them (status, rate-limit headers, body ``policyName``).

Usage: ``HUBSPOT_MOCK_URL=http://127.0.0.1:PORT HUBSPOT_MOCK_TOKEN=T python official_client.py``
(or the URL and token as the two arguments; ``HUBSPOT_MOCK_DEVELOPER_KEY`` is the mock's developer
API key, default ``mock-developer-api-key``). The mock must be fresh for this run: the script
counts the mock's requests (``GET /__mock/stats``) to see the client's own retries, and spends the
token's burst window at the end.

Prints one JSON summary on stdout (``{client, version, ok, checks[], created}``) and exits 1 when
any check failed, 2 on a setup error. Progress goes to stderr. Behaviours:
https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines (rate limits) and
https://developers.hubspot.com/docs/api-reference/error-handling (errors, 207).
"""

import http.server
import json
import os
import re
import sys
import threading
import time
import urllib.request
from datetime import datetime
from importlib import metadata

from hubspot import HubSpot
from hubspot.crm.contacts import (
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
    SimplePublicObjectInputForCreate,
)
from hubspot.automation.actions import (
    BatchInputCallbackCompletionBatchRequest,
    CallbackCompletionBatchRequest,
    CallbackCompletionRequest,
    PublicActionDefinitionEgg,
    PublicActionDefinitionPatch,
    PublicActionLabels,
    PublicObjectRequestOptions,
)
from hubspot.crm.associations.v4 import AssociationSpec
from hubspot.crm.companies import SimplePublicObjectInputForCreate as CompanyInputForCreate
from hubspot.crm.contacts.exceptions import ApiException
from urllib3.util.retry import Retry

RL = "x-hubspot-ratelimit-"
LASTNAME = "Officialpython"

args = sys.argv[1:]
BASE_URL = (args[0] if args else os.environ.get("HUBSPOT_MOCK_URL", "")).rstrip("/")
TOKEN = args[1] if len(args) > 1 else os.environ.get("HUBSPOT_MOCK_TOKEN", "")
if not BASE_URL or not TOKEN:
    print("usage: official_client.py BASE_URL TOKEN (or HUBSPOT_MOCK_URL, HUBSPOT_MOCK_TOKEN)", file=sys.stderr)
    sys.exit(2)

checks = []
created = {"single": None, "batch": [], "company": None}


def check(name, ok, detail):
    """Records one check; ``detail`` says what was seen (test data only)."""
    checks.append({"name": name, "ok": bool(ok), "detail": detail})
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {json.dumps(detail, default=str)}", file=sys.stderr)


def admin(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{BASE_URL}{path}", data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as res:  # noqa: S310 (loopback mock URL)
        return json.load(res)


def mock_requests():
    return admin("GET", "/__mock/stats")["requests"]


def expect_api_error(fn):
    """Runs ``fn``, which must raise the client's ApiException; returns it (or None)."""
    try:
        fn()
        return None
    except ApiException as e:
        return e


def body_of(e):
    try:
        return json.loads(e.body) if e is not None and e.body else {}
    except ValueError:
        return {}


def header(headers, name):
    """Header lookup, case-insensitive (urllib3's HTTPHeaderDict is; a plain dict may not be)."""
    if headers is None:
        return None
    for k, v in headers.items():
        if k.lower() == name:
            return v
    return None


def is_digits(s):
    return isinstance(s, str) and re.fullmatch(r"[0-9]+", s) is not None


def client(retry):
    return HubSpot(access_token=TOKEN, host=BASE_URL, retry=retry)


# No retries (the client has no policy of its own; urllib3's default would still honour a
# Retry-After on a 429): every call is one request.
api = client(Retry(total=0, respect_retry_after_header=False))
contacts = api.crm.contacts


def step(name, fn):
    """Runs one step; one that raises (an unexpected error answer, a client exception) is a failed
    check under its name, and the next steps still run."""
    try:
        ok, detail = fn()
        check(name, ok, detail)
    except Exception as e:  # noqa: BLE001 (any failure is reported in the summary)
        first = str(e).splitlines()[0] if str(e) else ""
        check(name, False, {"error": f"{type(e).__name__}: {first}"})


def create():
    """Create (POST /crm/v3/objects/contacts -> 201 SimplePublicObject)."""
    one = contacts.basic_api.create(SimplePublicObjectInputForCreate(
        properties={"email": "python.create@example.com", "firstname": "Ada", "lastname": LASTNAME},
        associations=[]))
    created["single"] = one.id
    return (is_digits(one.id) and one.properties.get("hs_object_id") == one.id
            and one.properties.get("email") == "python.create@example.com"
            and isinstance(one.created_at, datetime) and one.created_at.tzinfo is not None
            and isinstance(one.updated_at, datetime) and one.archived is False,
            {"id": one.id, "createdAt": one.created_at, "archived": one.archived})


def batch_create():
    """Batch create (201, status COMPLETE)."""
    batch = contacts.batch_api.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(
            properties={"email": email, "firstname": f"B{i}", "lastname": LASTNAME}, associations=[])
        for i, email in enumerate(["python.batch1@example.com", "python.batch2@example.com"])]))
    created["batch"] = sorted((r.id for r in batch.results), key=int)
    return (batch.status == "COMPLETE" and len(batch.results) == 2
            and all(is_digits(i) for i in created["batch"]) and len(set(created["batch"])) == 2
            and isinstance(batch.started_at, datetime) and isinstance(batch.completed_at, datetime),
            {"status": batch.status, "ids": created["batch"]})


def batch_read_207():
    """Batch read with one missing id: 207, the found records and one error naming the id."""
    missing = "999999999"
    read, status, _headers = contacts.batch_api.read_with_http_info(BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id=i) for i in [*created["batch"], missing]],
        properties=["email", "firstname"], properties_with_history=[]))
    ids = sorted((r.id for r in read.results), key=int)
    errors = getattr(read, "errors", None) or []
    err = errors[0] if errors else None
    err_ids = (err.context or {}).get("ids") if err is not None else None
    return (status == 207 and ids == created["batch"] and getattr(read, "num_errors", None) == 1
            and err is not None and err.category == "OBJECT_NOT_FOUND" and err_ids is not None
            and missing in err_ids and all(isinstance(r.properties.get("email"), str) for r in read.results),
            {"httpStatus": status, "ids": ids, "numErrors": getattr(read, "num_errors", None),
             "errorCategory": getattr(err, "category", None), "errorIds": err_ids})


def search_filter():
    """Search with a filter (EQ on email), and one with a sort (total, results, paging)."""
    found = contacts.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="EQ",
                                                   value="python.batch2@example.com")])],
        properties=["email", "firstname"], sorts=[], limit=10, after="0"))
    # The client types `sorts` as list[str]; HubSpot's documented sort is an object, which the
    # client passes through unchanged.
    by_last = contacts.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="lastname", operator="EQ", value=LASTNAME)])],
        properties=["email"], sorts=[{"propertyName": "createdate", "direction": "DESCENDING"}],
        limit=2, after="0"))
    next_after = by_last.paging.next.after if by_last.paging and by_last.paging.next else None
    return (found.total == 1 and len(found.results) == 1 and found.results[0].id == created["batch"][1]
            and found.results[0].properties.get("email") == "python.batch2@example.com"
            and by_last.total == 3 and len(by_last.results) == 2 and is_digits(next_after),
            {"total": found.total, "id": found.results[0].id if found.results else None,
             "byLastnameTotal": by_last.total, "nextAfter": next_after})


def read_by_id_property():
    """Read by a unique property: the client puts the e-mail into the path percent-encoded
    (`python.create%40example.com?idProperty=email`), as any HTTP client does."""
    by_email = contacts.basic_api.get_by_id("python.create@example.com", properties=["email"], id_property="email")
    return (by_email.id == created["single"] and by_email.properties.get("email") == "python.create@example.com",
            {"id": by_email.id})


def association_labelled():
    """A labelled association (v4 PUT with a body of types): the client, generated from HubSpot's
    spec, deserialises only a 201 (on another 2xx it returns None)."""
    company = api.crm.companies.basic_api.create(CompanyInputForCreate(
        properties={"name": "Python Client Co", "domain": "python.example.com"}, associations=[]))
    created["company"] = company.id
    labelled = api.crm.associations.v4.basic_api.create(
        "contacts", created["single"], "companies", company.id,
        [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=279)])
    return (labelled is not None and str(labelled.from_object_id) == created["single"]
            and str(labelled.to_object_id) == company.id and isinstance(labelled.labels, list),
            {"from": getattr(labelled, "from_object_id", None), "to": getattr(labelled, "to_object_id", None),
             "labels": getattr(labelled, "labels", None)})


DEVELOPER_KEY = os.environ.get("HUBSPOT_MOCK_DEVELOPER_KEY", "mock-developer-api-key")
APP_ID = 1160452
action = {"definition": None}


class BlockingAction(http.server.BaseHTTPRequestHandler):
    """The action's URL: every execution request is answered BLOCK."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        out = json.dumps({"outputFields": {"hs_execution_state": "BLOCK"}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_args):
        pass


action_server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), BlockingAction)
threading.Thread(target=action_server.serve_forever, daemon=True).start()
ACTION_URL = f"http://127.0.0.1:{action_server.server_address[1]}/action?client=python"


def action_definitions():
    """A custom workflow action (https://developers.hubspot.com/docs/api/automation/custom-workflow-actions):
    the definitions API takes the developer API key as ``hapikey``; the client checks the required
    fields of what it reads back (PublicActionDefinition)."""
    dev = HubSpot(api_key=DEVELOPER_KEY, host=BASE_URL, retry=Retry(total=0)).automation.actions.definitions_api
    definition = dev.create(APP_ID, PublicActionDefinitionEgg(
        action_url=ACTION_URL, published=True, object_types=["CONTACT"], input_fields=[], output_fields=[],
        object_request_options=PublicObjectRequestOptions(properties=["email"]),
        labels={"en": PublicActionLabels(action_name="Python client action")}, functions=[]))
    action["definition"] = definition.id
    page = dev.get_page(APP_ID, limit=10)
    patched = dev.update(definition.id, APP_ID, PublicActionDefinitionPatch(published=True))
    read = dev.get_by_id(definition.id, APP_ID)
    return (is_digits(definition.id) and definition.revision_id == "1" and definition.action_url == ACTION_URL
            and definition.published is True and any(d.id == definition.id for d in page.results)
            and patched.revision_id == "2" and read.revision_id == "2" and read.object_types == ["CONTACT"],
            {"id": definition.id, "revisionId": definition.revision_id, "listed": len(page.results),
             "patchedRevision": patched.revision_id})


def execution_in(callback_id, state):
    """The mock's view of one execution, once it is in ``state`` (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        found = admin("GET", f"/__mock/workflows/executions?callbackId={callback_id}")["executions"][0]
        if found["state"] == state:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"{callback_id} is {found['state']}, not {state}")
        time.sleep(0.02)


def callback_complete():
    """The mock calls the action's URL (BLOCK); the client completes the blocked executions (v4:
    ``outputFields`` only, as the client sends), one alone and one in a batch."""
    if action["definition"] is None:
        raise RuntimeError("no definition to enroll in")
    ids = admin("POST", "/__mock/workflows/enroll", {
        "definitionId": action["definition"], "objectType": "CONTACT", "objectId": created["single"],
        "count": 2})["callbackIds"]
    blocked = execution_in(ids[0], "blocked")
    execution_in(ids[1], "blocked")
    callbacks = api.automation.actions.callbacks_api
    callbacks.complete(ids[0], CallbackCompletionRequest(
        output_fields={"hs_execution_state": "SUCCESS", "note": "single"}))
    callbacks.complete_batch(BatchInputCallbackCompletionBatchRequest(inputs=[CallbackCompletionBatchRequest(
        callback_id=ids[1], output_fields={"hs_execution_state": "FAIL_CONTINUE"})]))
    one = execution_in(ids[0], "completed")
    two = execution_in(ids[1], "completed")
    return (blocked["request"]["object"]["properties"].get("email") == "python.create@example.com"
            and one["executionState"] == "SUCCESS" and one["outputs"].get("note") == "single"
            and two["executionState"] == "FAIL_CONTINUE" and two["finishedBy"] == "batchCallback",
            {"callbackIds": ids, "states": [one["executionState"], two["executionState"]]})


def injected_429_surfaced():
    """An injected 429 with retries off: one request, the exception carries status and body."""
    admin("POST", "/__mock/faults", {"next": [{"status": 429}]})
    before = mock_requests()
    e = expect_api_error(lambda: contacts.basic_api.get_by_id(created["single"]))
    sent = mock_requests() - before
    body = body_of(e)
    return (e is not None and e.status == 429 and body.get("policyName") == "TEN_SECONDLY_ROLLING"
            and body.get("errorType") == "RATE_LIMIT" and sent == 1,
            {"status": getattr(e, "status", None), "policyName": body.get("policyName"),
             "errorType": body.get("errorType"), "requestsSent": sent})


def retried_by_readme_retry():
    """The retry the client's README shows for 429s (urllib3 `Retry(total=5,
    status_forcelist=(429,))`): the injected 429 is retried and the read succeeds."""
    retrying = client(Retry(total=5, status_forcelist=(429,))).crm.contacts
    admin("POST", "/__mock/faults", {"next": [{"status": 429}]})
    before = mock_requests()
    again = retrying.basic_api.get_by_id(created["single"])
    sent = mock_requests() - before
    return again.id == created["single"] and sent == 2, {"id": again.id, "requestsSent": sent}


window = {"max": 0, "remaining": -1}


def rate_limit_headers_on_success():
    """The X-HubSpot-RateLimit-* headers of a success (the window the next step spends)."""
    _, status, h = contacts.basic_api.get_by_id_with_http_info(created["single"])
    max_ = int(header(h, f"{RL}max") or 0)
    remaining = int(header(h, f"{RL}remaining") or -1)
    window.update(max=max_, remaining=remaining)
    return (status == 200 and 0 < max_ and 0 <= remaining < max_
            and is_digits(header(h, f"{RL}interval-milliseconds")) and is_digits(header(h, f"{RL}daily"))
            and is_digits(header(h, f"{RL}daily-remaining")),
            {"max": max_, "remaining": remaining, "intervalMs": header(h, f"{RL}interval-milliseconds"),
             "daily": header(h, f"{RL}daily"), "dailyRemaining": header(h, f"{RL}daily-remaining")})


def limiter_429_with_headers():
    """A real 429 from the burst limiter: spend what remains, and the next call is refused with
    the headers at 0."""
    max_, remaining = window["max"], window["remaining"]
    if not 0 < max_ <= 1000:
        raise RuntimeError(f"unusable X-HubSpot-RateLimit-Max: {max_}")
    ok, limited = 0, None
    for _ in range(max_ + 1):
        limited = expect_api_error(lambda: contacts.basic_api.get_by_id(created["single"]))
        if limited is not None:
            break
        ok += 1
    lh = limited.headers if limited is not None else None
    body = body_of(limited)
    return (limited is not None and limited.status == 429 and ok == remaining
            and header(lh, f"{RL}remaining") == "0" and header(lh, f"{RL}max") == str(max_)
            and is_digits(header(lh, f"{RL}interval-milliseconds"))
            and body.get("policyName") == "TEN_SECONDLY_ROLLING" and body.get("errorType") == "RATE_LIMIT",
            {"status": getattr(limited, "status", None), "succeededBefore": ok, "announcedRemaining": remaining,
             "remaining": header(lh, f"{RL}remaining"), "max": header(lh, f"{RL}max"),
             "intervalMs": header(lh, f"{RL}interval-milliseconds"), "policyName": body.get("policyName")})


STEPS = [
    ("create", create),
    ("batch_create", batch_create),
    ("batch_read_207", batch_read_207),
    ("search_filter", search_filter),
    ("read_by_id_property", read_by_id_property),
    ("association_labelled", association_labelled),
    ("action_definitions", action_definitions),
    ("callback_complete", callback_complete),
    ("injected_429_surfaced", injected_429_surfaced),
    ("429_retried_by_readme_retry", retried_by_readme_retry),
    ("rate_limit_headers_on_success", rate_limit_headers_on_success),
    ("limiter_429_with_headers", limiter_429_with_headers),
]


def main():
    for name, fn in STEPS:
        step(name, fn)
    action_server.shutdown()
    ok = bool(checks) and all(c["ok"] for c in checks)
    print(json.dumps({"client": "hubspot-api-client", "version": metadata.version("hubspot-api-client"),
                      "ok": ok, "checks": checks, "created": created}, default=str))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
