//! The mock driven over real HTTP (ureq), as a HubSpot client would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Clock, ManualClock, MockConfig, MockHubSpot, SystemClock};
use crate::http::{request, HttpResponse};

/// The fixed private-app token of the mock in these tests (and `tests_ops`).
pub(super) const TOKEN: &str = "pat-na1-test";

/// A mock with `config`, [`TOKEN`] and limits high enough not to get in a test's way.
pub(super) fn start(config: MockConfig) -> MockHubSpot {
    start_with_clock(config, Arc::new(SystemClock))
}

/// Like [`start`], on `clock`.
pub(super) fn start_with_clock(config: MockConfig, clock: Arc<dyn Clock>) -> MockHubSpot {
    MockHubSpot::start_with_clock(
        MockConfig {
            token: TOKEN.into(),
            // Tests send many requests quickly; the rate-limit test lowers these itself.
            burst: 100_000,
            search_per_second: 100_000,
            ..config
        },
        clock,
    )
    .unwrap()
}

struct Client<'a> {
    mock: &'a MockHubSpot,
    prefix: &'static str,
}

impl<'a> Client<'a> {
    fn v3(mock: &'a MockHubSpot) -> Self {
        Self {
            mock,
            prefix: "/crm/v3/objects",
        }
    }

    fn dated(mock: &'a MockHubSpot) -> Self {
        Self {
            mock,
            prefix: "/crm/objects/2026-03",
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let url = format!("{}{}{}", self.mock.base_url(), self.prefix, path);
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let auth = format!("Bearer {TOKEN}");
        request(
            method,
            &url,
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
            bytes.as_deref(),
        )
        .unwrap()
    }

    fn json(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
        let r = self.call(method, path, body);
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        r.json().unwrap()
    }

    fn search(&self, kind: &str, body: &Value) -> Value {
        self.json("POST", &format!("/{kind}/search"), Some(body), 200)
    }
}

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn auth_is_required_with_hubspot_error_shape() {
    let mock = start(MockConfig::default());
    let url = format!("{}/crm/v3/objects/contacts", mock.base_url());
    for headers in [vec![], vec![("authorization", "Bearer wrong")]] {
        let r = request("GET", &url, &headers, None).unwrap();
        assert_eq!(r.status, 401);
        let body = r.json().unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "INVALID_AUTHENTICATION");
        assert!(body["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication credentials not found"));
        assert_eq!(body["correlationId"].as_str().unwrap().len(), 36);
        assert!(r.header("x-hubspot-ratelimit-max").is_none());
    }
}

#[test]
fn crud_round_trip_on_both_path_styles() {
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let mock = start_with_clock(MockConfig::default(), clock.clone());
    let c = Client::v3(&mock);
    let created = c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {"email": "Ada@Example.com", "firstname": "Ada", "date_of_birth": "1430438400000"}})),
        201,
    );
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<u64>().is_ok());
    let p = &created["properties"];
    assert_eq!(p["email"], "ada@example.com");
    assert_eq!(p["date_of_birth"], "2015-05-01");
    assert_eq!(p["hs_object_id"], id.as_str());
    assert!(p["createdate"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["archived"], false);
    assert_eq!(p["lastmodifieddate"], created["updatedAt"]);

    // The date-versioned path reads the same store; requested-but-unset values are null.
    let d = Client::dated(&mock);
    let read = d.json(
        "GET",
        &format!("/0-1/{id}?properties=firstname,phone"),
        None,
        200,
    );
    assert_eq!(read["properties"]["firstname"], "Ada");
    assert_eq!(read["properties"]["phone"], Value::Null);
    let by_email = c.json(
        "GET",
        "/contacts/ada@example.com?idProperty=email",
        None,
        200,
    );
    assert_eq!(by_email["id"], id.as_str());
    // Clients percent-encode path parameters (the official Node and Python clients send `%40`).
    let encoded = c.json(
        "GET",
        "/contacts/ada%40example.com?idProperty=email",
        None,
        200,
    );
    assert_eq!(encoded["id"], id.as_str());

    clock.advance(Duration::from_millis(5));
    let updated = d.json(
        "PATCH",
        &format!("/contacts/{id}"),
        Some(&json!({"properties": {"firstname": "Augusta", "date_of_birth": ""}})),
        200,
    );
    assert_eq!(updated["properties"]["firstname"], "Augusta");
    assert_eq!(updated["properties"]["date_of_birth"], Value::Null);
    assert!(updated["updatedAt"].as_str() > created["updatedAt"].as_str());

    // Validation per §7: a date not at midnight UTC.
    let bad = c.json(
        "PATCH",
        &format!("/contacts/{id}"),
        Some(&json!({"properties": {"date_of_birth": "1430518735865"}})),
        400,
    );
    assert_eq!(bad["category"], "VALIDATION_ERROR");
    assert_eq!(bad["errors"][0]["code"], "INVALID_DATE");
    assert_eq!(
        bad["errors"][0]["context"]["propertyName"][0],
        "date_of_birth"
    );

    let list = c.json("GET", "/contacts", None, 200);
    assert_eq!(ids(&list), vec![id.clone()]);

    assert_eq!(
        c.call("DELETE", &format!("/contacts/{id}"), None).status,
        204
    );
    let gone = c.json("GET", &format!("/contacts/{id}"), None, 404);
    assert_eq!(gone["category"], "OBJECT_NOT_FOUND");
    assert!(ids(&c.json("GET", "/contacts", None, 200)).is_empty());
    let archived = c.json("GET", &format!("/contacts/{id}?archived=true"), None, 200);
    assert_eq!(archived["archived"], true);
    // The email is free again.
    c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {"email": "ada@example.com"}})),
        201,
    );

    // Custom objects by objectTypeId; unknown types are a 400.
    let custom = c.json(
        "POST",
        "/2-1234",
        Some(&json!({"properties": {"name": "x"}})),
        201,
    );
    assert!(custom["properties"]["hs_createdate"].is_string());
    let unknown = c.json("GET", "/widgets", None, 400);
    assert_eq!(
        unknown["message"],
        "Unable to infer object type from: widgets"
    );
}

#[test]
fn duplicate_email_is_409_with_existing_id() {
    let mock = start(MockConfig {
        seed_contacts: 3,
        ..MockConfig::default()
    });
    let c = Client::v3(&mock);
    let existing = c.json(
        "GET",
        "/contacts/contact1@example.com?idProperty=email",
        None,
        200,
    );
    let body = c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {"email": "CONTACT1@example.com"}})),
        409,
    );
    assert_eq!(body["category"], "CONFLICT");
    assert_eq!(
        body["message"],
        format!(
            "Contact already exists. Existing ID: {}",
            existing["id"].as_str().unwrap()
        )
    );
}

#[test]
fn path_segments_are_percent_decoded_with_plus_kept() {
    let mock = start(MockConfig::default());
    let c = Client::v3(&mock);
    let created = c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {"email": "a+b@example.com"}})),
        201,
    );
    let id = created["id"].as_str().unwrap();
    // Encoded as the official clients encode a path parameter (encodeURIComponent, quote).
    for path in [
        "/contacts/a%2Bb%40example.com?idProperty=email",
        "/contacts/a+b%40example.com?idProperty=email",
        "/contacts/a+b@example.com?idProperty=email",
    ] {
        assert_eq!(c.json("GET", path, None, 200)["id"], id, "{path}");
    }
    // In a path `+` is not a space (that is a query's form encoding only).
    c.json(
        "GET",
        "/contacts/a%20b%40example.com?idProperty=email",
        None,
        404,
    );
    // Object types decode too, and the date-versioned form routes on decoded segments.
    c.json("GET", &format!("/contact%73/{id}"), None, 200);
    let dated = Client::dated(&mock).json(
        "GET",
        "/0-1/a%2Bb%40example.com?idProperty=email",
        None,
        200,
    );
    assert_eq!(dated["id"], id);
}

#[test]
fn batches_limit_partial_failure_and_upsert() {
    let mock = start(MockConfig::default());
    let c = Client::v3(&mock);
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"properties": {"email": format!("b{i}@example.com")}}))
        .collect();
    let r = c.json(
        "POST",
        "/contacts/batch/create",
        Some(&json!({"inputs": many})),
        400,
    );
    assert_eq!(r["category"], "VALIDATION_ERROR");
    assert!(c.json("GET", "/contacts", None, 200)["results"]
        .as_array()
        .unwrap()
        .is_empty());

    let created = c.json(
        "POST",
        "/contacts/batch/create",
        Some(&json!({"inputs": many[..100]})),
        201,
    );
    assert_eq!(created["status"], "COMPLETE");
    assert_eq!(created["results"].as_array().unwrap().len(), 100);
    let first = created["results"][0]["id"].as_str().unwrap().to_owned();

    let partial = c.json(
        "POST",
        "/contacts/batch/update",
        Some(&json!({"inputs": [
            {"id": first, "properties": {"firstname": "Bea"}},
            {"id": "999999", "properties": {"firstname": "Nobody"}},
        ]})),
        207,
    );
    assert_eq!(partial["status"], "COMPLETE");
    assert_eq!(partial["results"].as_array().unwrap().len(), 1);
    assert_eq!(partial["numErrors"], 1);
    assert_eq!(partial["errors"][0]["category"], "OBJECT_NOT_FOUND");

    let mixed = c.json(
        "POST",
        "/contacts/batch/create",
        Some(&json!({"inputs": [
            {"properties": {"email": "fresh@example.com"}, "objectWriteTraceId": "t1"},
            {"properties": {"email": "b0@example.com"}, "objectWriteTraceId": "t2"},
            {"properties": {"email": "x@example.com", "amount": "1,5"}, "objectWriteTraceId": "t3"},
        ]})),
        207,
    );
    assert_eq!(mixed["results"].as_array().unwrap().len(), 1);
    assert_eq!(mixed["errors"][0]["category"], "CONFLICT");
    assert_eq!(mixed["errors"][0]["context"]["objectWriteTraceId"][0], "t2");
    assert_eq!(mixed["errors"][1]["category"], "VALIDATION_ERROR");

    let read = c.json(
        "POST",
        "/contacts/batch/read",
        Some(
            &json!({"inputs": [{"id": "b1@example.com"}, {"id": "none@example.com"}],
                     "idProperty": "email", "properties": ["firstname"]}),
        ),
        207,
    );
    assert_eq!(read["results"].as_array().unwrap().len(), 1);
    assert_eq!(read["errors"][0]["context"]["ids"][0], "none@example.com");

    let upsert = c.json(
        "POST",
        "/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "b2@example.com", "idProperty": "email", "properties": {"firstname": "Old"}},
            {"id": "new@example.com", "idProperty": "email", "properties": {"firstname": "New"}},
        ]})),
        200,
    );
    assert_eq!(upsert["results"][0]["new"], false);
    assert_eq!(upsert["results"][1]["new"], true);
    let new = c.json(
        "GET",
        "/contacts/new@example.com?idProperty=email&properties=firstname",
        None,
        200,
    );
    assert_eq!(new["properties"]["firstname"], "New");

    assert_eq!(
        c.call(
            "POST",
            "/contacts/batch/archive",
            Some(&json!({"inputs": [{"id": first}, {"id": "424242"}]}))
        )
        .status,
        204
    );
    c.json("GET", &format!("/contacts/{first}"), None, 404);
}

#[test]
fn search_semantics() {
    let mock = start(MockConfig {
        seed_contacts: 40,
        seed_deals: 30,
        ..MockConfig::default()
    });
    let c = Client::v3(&mock);
    // AND within a group.
    let r = c.search(
        "contacts",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "firstname", "operator": "EQ", "value": "alice"},
            {"propertyName": "lifecyclestage", "operator": "EQ", "value": "subscriber"},
        ]}], "limit": 100}),
    );
    // i = 0, 20, 40…: firstname Alice; lifecycle subscriber when i % 8 == 0 → 0 and 40 (absent).
    assert_eq!(r["total"], 1);
    assert_eq!(
        r["results"][0]["properties"]["email"],
        "contact0@example.com"
    );
    // OR across groups.
    let r = c.search(
        "contacts",
        &json!({"filterGroups": [
            {"filters": [{"propertyName": "email", "operator": "EQ", "value": "contact3@example.com"}]},
            {"filters": [{"propertyName": "email", "operator": "IN", "values": ["contact5@example.com", "CONTACT6@example.com"]}]},
        ]}),
    );
    // IN values must be lower-case (§4.4): the upper-case one matches nothing.
    assert_eq!(r["total"], 2);
    // Numeric comparison, BETWEEN, sort, NOT_IN, HAS_PROPERTY.
    let r = c.search(
        "deals",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "amount", "operator": "BETWEEN", "value": "100", "highValue": "1000"},
            {"propertyName": "dealstage", "operator": "NOT_IN", "values": ["closedlost"]},
            {"propertyName": "amount", "operator": "HAS_PROPERTY"},
        ]}], "sorts": [{"propertyName": "amount", "direction": "DESCENDING"}],
            "properties": ["amount"], "limit": 200}),
    );
    let amounts: Vec<u64> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["properties"]["amount"].as_str().unwrap().parse().unwrap())
        .collect();
    // amount = i * 137: 137…959 are i = 1..=7; i = 6 is closedlost.
    assert_eq!(amounts, vec![959, 685, 548, 411, 274, 137]);
    let r = c.search(
        "deals",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "amount", "operator": "LT", "value": "274"},
            {"propertyName": "amount", "operator": "GTE", "value": "0"},
            {"propertyName": "dealname", "operator": "NEQ", "value": "deal 0"},
        ]}]}),
    );
    assert_eq!(r["total"], 1);
    let r = c.search(
        "deals",
        &json!({"filterGroups": [{"filters": [{"propertyName": "closedate", "operator": "NOT_HAS_PROPERTY"}]}]}),
    );
    assert_eq!(r["total"], 30);
    // Date filters as ms strings against stored ISO datetimes.
    let r = c.search(
        "contacts",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "createdate", "operator": "LTE", "value": (super::store::SEED_BASE_MS + 60_000).to_string()},
        ]}]}),
    );
    assert_eq!(r["total"], 2);

    // Paging with an offset cursor, archived excluded.
    let all =
        json!({"limit": 15, "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]});
    let p1 = c.search("contacts", &all);
    assert_eq!(p1["total"], 40);
    assert_eq!(p1["paging"]["next"]["after"], "15");
    let first_id = p1["results"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        c.call("DELETE", &format!("/contacts/{first_id}"), None)
            .status,
        204
    );
    let mut seen = Vec::new();
    let mut after = Value::String("0".into());
    loop {
        let mut req = all.clone();
        req["after"] = after.clone();
        let page = c.search("contacts", &req);
        assert_eq!(page["total"], 39);
        seen.extend(ids(&page));
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => after = Value::String(a.into()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 39);
    assert!(!seen.contains(&first_id));

    // The 10,000-result cap and the other documented limits are 400s.
    let r = c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"after": "9900", "limit": 101})),
        400,
    );
    assert_eq!(r["category"], "VALIDATION_ERROR");
    c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"after": "9900", "limit": 100})),
        200,
    );
    c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"limit": 201})),
        400,
    );
    let six = vec![json!({"filters": []}); 6];
    c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"filterGroups": six})),
        400,
    );
    let seven = vec![json!({"propertyName": "email", "operator": "HAS_PROPERTY"}); 7];
    c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"filterGroups": [{"filters": seven}]})),
        400,
    );
    c.json(
        "POST",
        "/contacts/search",
        Some(&json!({"sorts": [{"propertyName": "email"}, {"propertyName": "firstname"}]})),
        400,
    );
}

#[test]
fn rate_limits_burst_and_search() {
    let mock = MockHubSpot::start(MockConfig {
        token: TOKEN.into(),
        burst: 5,
        window: Duration::from_secs(10),
        daily: 1_000,
        search_per_second: 2,
        ..MockConfig::default()
    })
    .unwrap();
    let c = Client::v3(&mock);
    for left in (0..5).rev() {
        let r = c.call("GET", "/contacts", None);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-hubspot-ratelimit-max"), Some("5"));
        assert_eq!(
            r.header("x-hubspot-ratelimit-remaining"),
            Some(left.to_string().as_str())
        );
        assert_eq!(
            r.header("x-hubspot-ratelimit-interval-milliseconds"),
            Some("10000")
        );
        assert_eq!(r.header("x-hubspot-ratelimit-daily"), Some("1000"));
    }
    let r = c.call("GET", "/contacts", None);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("0"));
    let body = r.json().unwrap();
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");

    // Search is limited separately (not by the exhausted burst) and carries no headers.
    let start = Instant::now();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = c.call("POST", "/contacts/search", Some(&json!({})));
        assert!(r.header("x-hubspot-ratelimit-max").is_none());
        assert!(r.header("x-hubspot-ratelimit-remaining").is_none());
        assert!(r.header("x-hubspot-ratelimit-daily").is_none());
        statuses.push((r.status, r.json().unwrap()));
    }
    if start.elapsed() < Duration::from_millis(900) {
        assert_eq!(statuses[0].0, 200);
        assert_eq!(statuses[1].0, 200);
        assert_eq!(statuses[2].0, 429);
        assert_eq!(
            statuses[2].1["message"],
            "You have reached your secondly limit."
        );
    }
}

#[test]
fn daily_limit_uses_daily_policy() {
    let mock = MockHubSpot::start(MockConfig {
        token: TOKEN.into(),
        daily: 2,
        ..MockConfig::default()
    })
    .unwrap();
    let c = Client::v3(&mock);
    assert_eq!(c.call("GET", "/deals", None).status, 200);
    let r = c.call("GET", "/deals", None);
    assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
    let r = c.call("GET", "/deals", None);
    assert_eq!(r.status, 429);
    let body = r.json().unwrap();
    assert_eq!(body["policyName"], "DAILY");
    assert_eq!(body["message"], "You have reached your daily limit.");
}

#[test]
fn keep_alive_and_seeded_paging() {
    let mock = start(MockConfig {
        seed_companies: 250,
        ..MockConfig::default()
    });
    // A pooled agent reuses one connection for every page.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut after: Option<String> = None;
    let mut count = 0;
    loop {
        let mut url = format!("{}/crm/v3/objects/companies?limit=100", mock.base_url());
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let mut r = agent
            .get(&url)
            .header("authorization", &format!("Bearer {TOKEN}"))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        count += body["results"].as_array().unwrap().len();
        match body["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(count, 250);
}

#[test]
fn raw_http_keep_alive_expect_continue_and_chunked() {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    let mock = start(MockConfig::default());
    let mut conn = std::net::TcpStream::connect(mock.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let read_response = |reader: &mut BufReader<std::net::TcpStream>| {
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut len = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    };
    let body = r#"{"properties":{"email":"raw@example.com"}}"#;
    write!(
        conn,
        "POST /crm/v3/objects/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut cont = String::new();
    reader.read_line(&mut cont).unwrap();
    assert!(cont.starts_with("HTTP/1.1 100"), "{cont}");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    conn.write_all(body.as_bytes()).unwrap();
    let (status, text) = read_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 201"), "{status} {text}");

    // Same connection, chunked body.
    let body = r#"{"filterGroups":[{"filters":[{"propertyName":"email","operator":"EQ","value":"RAW@example.com"}]}]}"#;
    let (a, b) = body.split_at(10);
    write!(
        conn,
        "POST /crm/objects/2026-03/contacts/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    )
    .unwrap();
    let (status, text) = read_response(&mut reader);
    assert!(status.starts_with("HTTP/1.1 200"), "{status} {text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 1);
}

#[test]
fn search_query_tokens_and_list_links() {
    let mock = start(MockConfig {
        seed_companies: 30,
        ..MockConfig::default()
    });
    let c = Client::v3(&mock);
    let r = c.search("companies", &json!({"query": "company2"}));
    // company2, company20…company29 (names and domains).
    assert_eq!(r["total"], 11);
    let r = c.search(
        "companies",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "2*"},
        ]}]}),
    );
    assert_eq!(r["total"], 11);
    let r = c.search(
        "companies",
        &json!({"filterGroups": [{"filters": [
            {"propertyName": "name", "operator": "NOT_CONTAINS_TOKEN", "value": "1*"},
            {"propertyName": "numberofemployees", "operator": "GT", "value": "20"},
        ]}]}),
    );
    // numberofemployees = i + 1 > 20 → i ≥ 20; minus names with a token starting with 1 (none ≥ 20).
    assert_eq!(r["total"], 10);
    let list = c.json("GET", "/companies?limit=7&properties=name", None, 200);
    let link = list["paging"]["next"]["link"].as_str().unwrap();
    assert!(link.starts_with(&mock.base_url()), "{link}");
    let next = request(
        "GET",
        link,
        &[("authorization", &format!("Bearer {TOKEN}"))],
        None,
    )
    .unwrap();
    let next = next.json().unwrap();
    assert_eq!(next["results"].as_array().unwrap().len(), 7);
    assert_eq!(next["results"][0]["properties"]["name"], "Company 7");
}

#[test]
fn associations_v4_and_v3_reads() {
    let mock = start(MockConfig {
        seed_contacts: 2,
        seed_companies: 2,
        seed_deals: 1,
        ..MockConfig::default()
    });
    let c = Client::v3(&mock);
    let v4 = Client {
        mock: &mock,
        prefix: "/crm/v4/objects",
    };
    let contact = c.json("GET", "/contacts?limit=1", None, 200)["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let companies = ids(&c.json("GET", "/companies", None, 200));
    let deal = ids(&c.json("GET", "/deals", None, 200)).remove(0);

    let r = v4.json(
        "PUT",
        &format!(
            "/contacts/{contact}/associations/default/companies/{}",
            companies[0]
        ),
        None,
        200,
    );
    assert_eq!(r["results"][0]["associationSpec"]["associationTypeId"], 279);
    assert_eq!(r["results"][1]["associationSpec"]["associationTypeId"], 280);
    v4.json(
        "PUT",
        &format!("/0-1/{contact}/associations/0-2/{}", companies[1]),
        Some(&json!([{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}])),
        201,
    );
    let list = v4.json(
        "GET",
        &format!("/contacts/{contact}/associations/companies"),
        None,
        200,
    );
    assert_eq!(list["results"].as_array().unwrap().len(), 2);
    assert_eq!(list["results"][1]["associationTypes"][0]["typeId"], 1);
    assert_eq!(list["results"][1]["associationTypes"][1]["typeId"], 279);
    let back = v4.json(
        "GET",
        &format!("/companies/{}/associations/contacts", companies[0]),
        None,
        200,
    );
    assert_eq!(back["results"][0]["toObjectId"].to_string(), contact);

    // Create with associations; read them back through v3 `associations=`.
    let created = c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {"email": "linked@example.com"},
            "associations": [{"to": {"id": deal}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 4}]}]})),
        201,
    );
    let id = created["id"].as_str().unwrap();
    let read = c.json(
        "GET",
        &format!("/contacts/{id}?associations=deals,companies"),
        None,
        200,
    );
    assert_eq!(
        read["associations"]["deals"]["results"][0]["id"],
        deal.as_str()
    );
    assert_eq!(
        read["associations"]["deals"]["results"][0]["type"],
        "contact_to_deal"
    );
    assert!(read["associations"].get("companies").is_none());
    let read = c.json(
        "GET",
        &format!("/contacts/{contact}?associations=companies"),
        None,
        200,
    );
    let types: Vec<&str> = read["associations"]["companies"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec![
            "contact_to_company_unlabeled",
            "contact_to_company",
            "contact_to_company_unlabeled"
        ]
    );
    c.json(
        "POST",
        "/contacts",
        Some(&json!({"properties": {}, "associations": [{"to": {"id": "999999"}, "types": [{"associationTypeId": 279}]}]})),
        400,
    );

    // Archived targets disappear; DELETE removes both directions.
    assert_eq!(
        c.call("DELETE", &format!("/companies/{}", companies[1]), None)
            .status,
        204
    );
    let list = v4.json(
        "GET",
        &format!("/contacts/{contact}/associations/companies"),
        None,
        200,
    );
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        v4.call(
            "DELETE",
            &format!(
                "/companies/{}/associations/contacts/{contact}",
                companies[0]
            ),
            None
        )
        .status,
        204
    );
    let list = v4.json(
        "GET",
        &format!("/contacts/{contact}/associations/companies"),
        None,
        200,
    );
    assert!(list["results"].as_array().unwrap().is_empty());
    v4.json("GET", "/contacts/424242/associations/companies", None, 404);
}
