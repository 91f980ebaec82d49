#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/ from the project's test
vectors (core/src/*/tests, core/tests/): HubSpot's documented and SDK signature vectors, the
webhook batches, filter and field-map configurations, HubSpot API responses and Standard
Webhooks' example. The files are committed; run this again after changing a target's input
framing (see each target's doc comment). Deterministic: same files every run."""

import hashlib
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"

SECRET = b"yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
URI = b"https://www.example.com/webhook_uri"
DOCS_V1_BODY = b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]'
SDK_BODY = b"{'example_field':'example_value'}"

BATCHES = [
    b'[{"objectId":1246965,"propertyName":"lifecyclestage","propertyValue":"subscriber","changeSource":"ACADEMY","eventId":3816279340,"subscriptionId":25,"portalId":33,"appId":1160452,"occurredAt":1462216307945,"eventType":"contact.propertyChange","attemptNumber":0},\n {"objectId":1246978,"changeSource":"IMPORT","eventId":3816279480,"subscriptionId":22,"portalId":33,"appId":1160452,"occurredAt":1462216307945,"eventType":"contact.creation","attemptNumber":0}]',
    DOCS_V1_BODY,
    b'[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"contact.merge","objectId":10,"primaryObjectId":10,"mergedObjectIds":[11,12],"newObjectId":13,"numberOfPropertiesMoved":4}]',
    b'[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"object.propertyChange","objectTypeId":"0-3","objectId":5,"propertyName":"amount","isSensitive":false}]',
    b'[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"object.creation","objectTypeId":"2-12345","objectId":5}]',
    b'[{"subscriptionType":"invoice.teleported","portalId":1,"eventId":2,"occurredAt":3,"brandNew":{"nested":[1,2]},"sourceId":"userId:47812075","changeFlag":"CREATED"}]',
    b'[{"subscriptionType":"contact.propertyChange","portalId":"1","eventId":"2","occurredAt":3,"propertyName":"first\\u005fname"}]',
    b'[{"portalId":1,"eventId":2,"occurredAt":3},{"subscriptionType":"contact.creation","eventId":2,"occurredAt":3},7,{"subscriptionType":"contact.creation","portalId":-1,"eventId":2,"occurredAt":3},{"subscriptionType":"contact.creation","portalId":1,"eventId":2,"occurredAt":3}]',
    b'[{"subscriptionType":"contact.associationChange","portalId":1,"eventId":9,"occurredAt":3,"objectId":1,"associationType":"CONTACT_TO_COMPANY","fromObjectId":1,"toObjectId":2,"associationRemoved":false}]',
    b'[{"subscriptionType":"contact.privacyDeletion","portalId":1,"eventId":9,"occurredAt":3,"objectId":1}]',
    b" [ ] ",
]

FILTER_EVENTS = b'''[
  {"subscriptionType":"contact.propertyChange","portalId":1,"eventId":1,"occurredAt":1,"objectId":1,"propertyName":"email","changeSource":"CRM_UI"},
  {"subscriptionType":"contact.propertyChange","portalId":1,"eventId":2,"occurredAt":1,"objectId":1,"propertyName":"phone","changeSource":"IMPORT"},
  {"subscriptionType":"contact.creation","portalId":2,"eventId":3,"occurredAt":1,"objectId":2,"changeSource":"API","sourceId":"app:54321"},
  {"subscriptionType":"deal.deletion","portalId":1,"eventId":4,"occurredAt":1,"objectId":3},
  {"subscriptionType":"object.propertyChange","objectTypeId":"0-1","portalId":1,"eventId":5,"occurredAt":1,"objectId":4,"propertyName":"email","sourceId":"userId:7"},
  {"subscriptionType":"company.merge","portalId":3,"eventId":6,"occurredAt":1,"objectId":5,"sourceId":"54321"}
]'''

FILTERS = [
    b"{}",
    b'{"include":[{"types":["contact.*","*.deletion"],"properties":["email"]}],"exclude":[{"changeSources":["IMPORT"]}],"ignoreOwnChanges":{"appIds":[54321],"sourceIds":["userId:1"]}}',
    b'{"include":[{"types":["*.deletion","*.merge"]}]}',
    b'{"include":[{"objectTypes":["0-1"]}]}',
    b'{"include":[{"types":["contact.*"],"portalIds":[1,2]}],"exclude":[{"properties":["phone"]}]}',
    b'{"include":[{"types":["con*tact.creation"]}]}',
]

MAPPINGS = [
    b'''{"objects":{"contacts":{"fields":[
  {"hubspot":"email","type":"email"},
  {"hubspot":"firstname","field":"first_name"},
  {"hubspot":"lifecyclestage","field":"stage","type":"enumeration","values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"},
  {"hubspot":"interests","type":"multiselect","values":{"chocolate":"choc","strawberry":"straw"}},
  {"hubspot":"closedate","field":"close_date","type":"date"},
  {"hubspot":"createdate","field":"created_at","type":"datetime","readOnly":true},
  {"hubspot":"num_employees","field":"employees","type":"number","default":0},
  {"hubspot":"hs_email_optout","field":"opted_out","type":"bool"},
  {"hubspot":"hubspot_owner_id","field":"owner","type":"owner"},
  {"field":"source","constant":"hubspot"}]},
 "deals":{"fields":[{"hubspot":"amount","type":"number"}]}}}''',
    b'''{"objects":{"contacts":{"fields":[
  {"hubspot":"s"},{"hubspot":"n","type":"number"},{"hubspot":"b","type":"bool"},
  {"hubspot":"d","type":"date"},{"hubspot":"dt","type":"datetime"},
  {"hubspot":"e","field":"stage","type":"enumeration","values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"},
  {"hubspot":"m","type":"multiselect","values":{"a":"A","b":"B"},"unmappedValues":"keep"},
  {"hubspot":"em","type":"email"},{"hubspot":"o","type":"owner"},
  {"hubspot":"dn","type":"number","default":7},{"field":"k","constant":"x"}]}}}''',
    b'{"objects":{"contact":{"fields":[{"hubspot":"a"}]},"contacts":{"fields":[{"hubspot":"a"}]}}}',
    b'{"objects":{"2-123":{"fields":[{"hubspot":"x","type":"datetime"}]}}}',
]
PROPERTIES = [
    b'{"email":" Ann@Example.COM ","firstname":"Ann","lifecyclestage":"lead","interests":"strawberry;chocolate","closedate":"2015-05-01","createdate":"2024-09-11T18:21:50.012Z","num_employees":"1e3","hs_email_optout":"TRUE","hubspot_owner_id":"123"}',
    b'{"s":"x","n":"-12.50","b":"false","d":"1430438400000","dt":"1726078910012","e":"other","m":"b;a;c","em":"a@b.c","o":"7","dn":null}',
    b'{"amount":"1,000"}',
    b"{}",
]
RECORDS = [
    b'{"email":"a@b.c","stage":"LEAD","interests":["choc"],"close_date":"2015-05-01T00:00:00Z","employees":"12","opted_out":"true","owner":123}',
    b'{"n":1.5,"d":1430438400000,"dt":"2024-09-11 18:21:50.012345+02:00","m":"A;b","s":null}',
]

API = [
    (200, b"", b'{"id":"5","properties":{},"archived":true}'),
    (207, b"", b'{"status":"COMPLETE","results":[{"id":"512","properties":{"email":"ok@example.com","firstname":null,"createdate":"2024-09-11T18:21:50.012Z"},"createdAt":"2024-09-11T18:21:50.012Z","updatedAt":"2024-09-11T18:21:50.012Z","archived":false,"objectWriteTraceId":"t-0"}],"numErrors":2,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid","context":{"objectWriteTraceId":["t-1"]}},{"status":"error","category":"OBJECT_NOT_FOUND","message":"Could not get some CONTACT objects, they may be deleted or not exist.","context":{"ids":["777","888"]}}],"startedAt":"2024-09-11T18:21:49.900Z","completedAt":"2024-09-11T18:21:50.100Z"}'),
    (200, b"", b'{"total":2,"results":[{"id":"1","properties":{"email":"a@b.com","hs_object_id":"1"},"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-02T00:00:00Z","archived":false},{"id":"2","properties":{"email":"c@d.com"}}],"paging":{"next":{"after":"2","link":"?after=2"}}}'),
    (200, b"", b'{"status":"COMPLETE","results":[{"from":{"id":"101"},"to":[{"toObjectId":2001,"associationTypes":[{"category":"HUBSPOT_DEFINED","typeId":279,"label":null},{"category":"HUBSPOT_DEFINED","typeId":1,"label":"Primary"}]}]}],"startedAt":"2024-01-01T00:00:00Z","completedAt":"2024-01-01T00:00:01Z"}'),
    (200, b"", b'{"token_type":"bearer","refresh_token":"example-refresh-token-not-real","access_token":"example-access-token-not-real","expires_in":1800}'),
    (204, b"", b""),
    (401, b"", b'{"status":"error","message":"Authentication credentials not found.","correlationId":"cc6f9a4b-4ee0-4a12-a5b1-8b9a7d2d0e0f","category":"INVALID_AUTHENTICATION"}'),
    (429, b"x-hubspot-ratelimit-interval-milliseconds: 10000\nx-hubspot-ratelimit-max: 100\nx-hubspot-ratelimit-remaining: 0\n", b'{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"9c5e6b4e-2f7d-4a55-9a2e-1c1d3c0c7e11","policyName":"TEN_SECONDLY_ROLLING","requestId":"0b3c1a5e-7f0e-4c1d-9d8a-6e2b5f4a3c21"}'),
    (429, b"retry-after: 7\n", b'{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","policyName":"DAILY"}'),
    (429, b"", b'{"status":"error","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT"}'),
    (409, b"", b'{"status":"error","message":"Contact already exists. Existing ID: 12345","category":"CONFLICT"}'),
    (400, b"", b'{"status":"error","message":"x","errors":[{"message":"discount was not a valid number","code":"INVALID_INTEGER","context":{"propertyName":["discount"]}}],"category":"VALIDATION_ERROR"}'),
    (403, b"", b'{"status":"error","message":"scopes","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredScopes":["crm.objects.contacts.write"]}}]}'),
    (404, b"", b'{"status":"error","message":"resource not found","category":"OBJECT_NOT_FOUND"}'),
    (423, b"retry-after: Sun, 06 Nov 1994 08:49:37 GMT\n", b"locked"),
    (477, b"retry-after: 120\n", b""),
    (502, b"", b"<html>bad gateway</html>"),
    (524, b"", b""),
]

QUEUE_MESSAGES = [
    b'{"v":1,"key":"hs1_1","attempt":2,"receivedAt":3,"requestId":"r\\"q","event":{"a":[1,"\xc3\xa9"]}}',
    b'{"v":1,"key":"hs1_1","attempt":1,"receivedAt":3,"requestId":"r","eventRef":"evt:hs1_1","event":null}',
    b'{"v":1,"reason":"destination_rejected","detail":"status 400","attempts":1,"key":"hs1_1","receivedAt":3,"requestId":"r","event":{"eventId":1}}',
    b'{"v":1,"reason":"event_missing_field","detail":"portalId","attempts":0,"key":null,"receivedAt":3,"requestId":"r","eventRef":"evt:x","event":null}',
]

CONFIGS = [
    b"HUBSPOT_CLIENT_SECRET=your-hubspot-app-client-secret\nFORWARD_URL=https://example.com/hubspot-events\nFORWARD_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nADMIN_TOKEN=replace-with-a-long-random-token\n",
    b"HUBSPOT_CLIENT_SECRET=s\nFORWARD_URL=http://127.0.0.1:8091/\nFORWARD_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\nSIGNATURE_MAX_AGE_SECS=300\nMAX_BODY_BYTES=1048576\nFORWARD_TIMEOUT_MS=10000\nFORWARD_MAX_ATTEMPTS=5\nDEAD_LETTER_RETENTION_DAYS=14\nALLOW_LEGACY_SIGNATURES=true\nFAULT_INJECTION=false\n",
    b"FORWARD_URL=http://example.com/\nSIGNATURE_MAX_AGE_SECS=99999999999999999999\nENRICHMENT_MAP={\"objects\":{\"contacts\":{\"fields\":[{\"hubspot\":\"email\",\"type\":\"email\"}]}}}\n",
    b"FORWARD_URL=https://[::1]/x\nHUBSPOT_TIMEOUT_MS=-1\nDEDUPE_TTL_SECS= 86400 \n",
]

RETRY_AFTER = [b"120", b" 0 ", b"Fri, 31 Dec 9999 23:59:59 GMT", b"Sun, 06 Nov 99999999999999999 08:49:37 GMT", b"Sun, 06 Nov 1994 08:49:37 GMT", b"Wed, 21 Oct 2015 07:28:00 GMT", b"Thu, 29 Feb 2024 23:59:60 GMT", b"-1", b"1.5"]


def write(target, name, data):
    d = ROOT / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}").write_bytes(data)


def u64(n):
    return struct.pack("<Q", n)


def main():
    for i, b in enumerate(BATCHES):
        write("batch", f"vec{i}", b)

    for i, f in enumerate(FILTERS):
        write("filter_config", f"vec{i}", f + b"\0" + FILTER_EVENTS)

    for i, m in enumerate(MAPPINGS):
        for j, p in enumerate(PROPERTIES):
            write("mapping", f"vec{i}-{j}", m + b"\0" + p + b"\0" + RECORDS[(i + j) % len(RECORDS)])

    # Found by the mapping target: a number that did not survive its own snapshot text.
    write("mapping", "crash-float", b'{"co0ubspotd":1000000000000000000000000069729164372184594}')

    for i, v in enumerate(RETRY_AFTER):
        write("retry_after", f"vec{i}", u64(1_445_412_480 if i % 2 else 0) + v)

    for i, (status, headers, body) in enumerate(API):
        prefix = bytes([i % 5, 1 + i % 5]) + u64(1_700_000_000_000) + bytes([128])
        write("api_response", f"vec{i}", prefix + str(status).encode() + b"\n" + headers + b"\n" + body)

    # signature_headers: now_ms, legacy flag (0 = accept), then an HTTP-like request.
    def request(now, legacy, uri, headers, body):
        return u64(now) + bytes([legacy]) + b"POST " + uri + b"\n" + headers + b"\n" + body

    sh = [
        request(0, 0, URI, b"X-HubSpot-Signature: 232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de\nX-HubSpot-Signature-Version: v1\n", DOCS_V1_BODY),
        request(0, 0, URI, b"x-hubspot-signature: 69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750\nx-hubspot-signature-version: v1\n", SDK_BODY),
        request(1_693_657_560_000, 1, URI, b"X-HubSpot-Signature-v3: K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=\nX-HubSpot-Request-Timestamp: 1693657560000\n", SDK_BODY),
        request(1_700_000_301_000, 1, URI, b"X-HubSpot-Signature-v3: RnbPH7 UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=\nX-HubSpot-Request-Timestamp: 1700000300000\n", SDK_BODY),
        request(1_700_000_000_000, 1, b"https://www.example.com/webhook_uri?state=a%3Ab%2Cc&x=1%202", b"X-HubSpot-Signature-v3: SH/fkvGTgpt54x5RiLpHMZ3ApU2l6p2/Vd3U1EGtL9s=\nX-HubSpot-Request-Timestamp: 1700000000000\n", DOCS_V1_BODY),
        request(0, 0, URI, b"X-HubSpot-Signature: 00\nX-HubSpot-Signature-Version: v2\n", DOCS_V1_BODY),
    ]
    for i, s in enumerate(sh):
        write("signature_headers", f"vec{i}", s)

    # signature_v3: part, position (2), flip, method (0 = POST), timestamp (8), secret\0uri\0body.
    v3 = [
        (1_693_657_560_000, URI, SDK_BODY),
        (1_700_000_300_000, URI, SDK_BODY),
        (1_700_000_000_000, b"https://www.example.com/webhook_uri?state=a%3Ab%2Cc&x=1%202", DOCS_V1_BODY),
        (1_700_000_000_000, b"https://h.example/p%3a%2f%3F%40%21%24%27%28%29%2A%2c%3B", b"[]"),
    ]
    for i, (ts, uri, body) in enumerate(v3):
        for part in range(4):
            data = bytes([part]) + struct.pack("<H", 7 + i) + bytes([0x20]) + bytes([0]) + u64(ts) + SECRET + b"\0" + uri + b"\0" + body
            write("signature_v3", f"vec{i}-{part}", data)

    # standard_webhooks: part, position (2), flip, timestamp (8), now (8), tolerance (8), key (24),
    # then secret text\0id\0any timestamp\0any signatures\0body.
    for part in range(4):
        data = (bytes([part]) + struct.pack("<H", 3) + bytes([1]) + u64(1_614_265_330) + u64(1_614_265_330) + u64(300)
                + bytes(range(24))
                + b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\0msg_p5jXN8AQM9LWM0D4loKWxJek\0" + b"1614265330\0"
                + b"v1,AAAA v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\0" + b'{"test": 2432232314}')
        write("standard_webhooks", f"vec{part}", data)

    # queue_message: attempt (4), received_at (8), flags (bit 0: by reference), then
    # key\0request id\0event ref\0event JSON; and whole messages as read from a queue.
    for i, b in enumerate(BATCHES[:3]):
        event = b[b.index(b"{"):b.rindex(b"}") + 1] if i else b"{\"a\":[1,\"\xc3\xa9\"]}"
        data = struct.pack("<I", 1 + i) + u64(1_700_000_000_000) + bytes([i % 2]) + b"hs1_" + str(i).encode() + b"\0r\"q\0evt:hs1_1\0" + event
        write("queue_message", f"vec{i}", data)
    for i, m in enumerate(QUEUE_MESSAGES):
        write("queue_message", f"msg{i}", m)

    # config: KEY=VALUE lines, as in .dev.vars.example and the documented ranges.
    for i, c in enumerate(CONFIGS):
        write("config", f"vec{i}", c)


if __name__ == "__main__":
    main()
