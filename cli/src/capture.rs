//! Captured requests: raw HTTP/1.1 (what `nc -l`, a proxy or a request bin saves) or separate
//! header and body files.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A captured request.
#[derive(Debug)]
pub(crate) struct Captured {
    /// The request line's method.
    pub(crate) method: Option<String>,
    /// The request line's target (path and query, or an absolute URL).
    pub(crate) target: Option<String>,
    pub(crate) headers: HeaderMap,
    /// The body, byte for byte.
    pub(crate) body: Vec<u8>,
}

impl Captured {
    /// The URL HubSpot called as far as the capture tells: an absolute target, else
    /// `https://` + `Host` + target (HubSpot calls HTTPS endpoints only).
    pub(crate) fn url(&self) -> Option<String> {
        let target = self.target.as_deref()?;
        if target.starts_with("http://") || target.starts_with("https://") {
            return Some(target.to_owned());
        }
        let host = self.headers.get("host")?.to_str().ok()?;
        Some(format!("https://{host}{target}"))
    }
}

/// Parses `Name: value` lines (blank lines and a leading request line skipped) or a JSON object
/// of names to strings.
pub(crate) fn parse_headers(bytes: &[u8]) -> Result<HeaderMap, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "headers are not UTF-8".to_owned())?;
    let mut map = HeaderMap::new();
    if text.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("headers: not JSON: {e}"))?;
        for (k, v) in v.as_object().ok_or("headers: expected a JSON object")? {
            let v = v
                .as_str()
                .ok_or_else(|| format!("header {k:?}: expected a string"))?;
            insert(&mut map, k, v)?;
        }
        return Ok(map);
    }
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.contains(" HTTP/") {
            continue;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        insert(&mut map, k.trim(), v.trim())?;
    }
    Ok(map)
}

fn insert(map: &mut HeaderMap, name: &str, value: &str) -> Result<(), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("not a header name: {name:?}"))?;
    let value =
        HeaderValue::from_str(value).map_err(|_| format!("header {name}: not a header value"))?;
    map.append(name, value);
    Ok(())
}

/// Parses raw HTTP/1.1: request line, headers, blank line (CRLF or LF), body.
pub(crate) fn parse_raw(bytes: &[u8]) -> Result<Captured, String> {
    let (head, body) = split_head(bytes).ok_or("no blank line after the headers")?;
    let head = std::str::from_utf8(head).map_err(|_| "headers are not UTF-8".to_owned())?;
    let mut lines = head.lines();
    let request_line = lines.next().ok_or("empty request")?.trim_end_matches('\r');
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("not a request line: {request_line:?}"));
    };
    if !version.starts_with("HTTP/") {
        return Err(format!("not a request line: {request_line:?}"));
    }
    let rest: Vec<&str> = lines.collect();
    let headers = parse_headers(rest.join("\n").as_bytes())?;
    let mut body = body.to_vec();
    // A capture may hold more than the request (a pipelined second one): Content-Length rules.
    if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        if body.len() < n {
            return Err(format!(
                "the body is {} bytes, Content-Length says {n}: the capture is cut",
                body.len()
            ));
        }
        body.truncate(n);
    }
    Ok(Captured {
        method: Some(method.to_owned()),
        target: Some(target.to_owned()),
        headers,
        body,
    })
}

fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        return Some((&bytes[..i], &bytes[i + 4..]));
    }
    let i = bytes.windows(2).position(|w| w == b"\n\n")?;
    Some((&bytes[..i], &bytes[i + 2..]))
}

/// Other spellings of `url` a proxy or a framework commonly changes: the other scheme, with or
/// without a trailing slash, without the query, without a default port.
pub(crate) fn url_variants(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let swapped = if let Some(rest) = url.strip_prefix("https://") {
        format!("http://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("https://{rest}")
    } else {
        return out;
    };
    for base in [url.to_owned(), swapped] {
        let (path, query) = match base.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (base.clone(), None),
        };
        let slash = if path.ends_with('/') {
            path.trim_end_matches('/').to_owned()
        } else {
            format!("{path}/")
        };
        let mut forms = vec![base.clone(), slash.clone()];
        if let Some(q) = &query {
            forms.push(path.clone());
            forms.push(format!("{slash}?{q}"));
        }
        for f in forms {
            for g in [f.replacen(":443/", "/", 1), f.replacen(":80/", "/", 1), f] {
                if g != url && !out.contains(&g) {
                    out.push(g);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_requests_with_crlf_or_lf() {
        let raw = b"POST /webhooks/hubspot?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 2\r\nX-HubSpot-Signature-v3: abc\r\n\r\n[]extra";
        let c = parse_raw(raw).unwrap();
        assert_eq!(c.method.as_deref(), Some("POST"));
        assert_eq!(c.body, b"[]");
        assert_eq!(
            c.url().as_deref(),
            Some("https://example.com/webhooks/hubspot?x=1")
        );
        assert_eq!(c.headers["x-hubspot-signature-v3"], "abc");
        let lf = parse_raw(b"POST /h HTTP/1.1\nHost: a.b\n\n[1]").unwrap();
        assert_eq!(lf.body, b"[1]");
        assert!(parse_raw(b"POST /h HTTP/1.1\r\nContent-Length: 9\r\n\r\n[]").is_err());
        assert!(parse_raw(b"garbage").is_err());
    }

    #[test]
    fn header_files_as_lines_or_json() {
        let h = parse_headers(b"X-A: 1\r\nx-b:  two \n\n").unwrap();
        assert_eq!(
            (h["x-a"].to_str().unwrap(), h["x-b"].to_str().unwrap()),
            ("1", "two")
        );
        let j = parse_headers(br#"{"X-A": "1"}"#).unwrap();
        assert_eq!(j["x-a"], "1");
        assert!(parse_headers(b"no colon").is_err());
    }

    #[test]
    fn variants_cover_scheme_slash_query_and_port() {
        let v = url_variants("https://a.example:443/hook?x=1");
        assert!(v.contains(&"http://a.example:443/hook?x=1".to_owned()));
        assert!(v.contains(&"https://a.example/hook?x=1".to_owned()));
        assert!(v.contains(&"https://a.example:443/hook/?x=1".to_owned()));
        assert!(v.contains(&"https://a.example:443/hook".to_owned()));
        assert!(!v.contains(&"https://a.example:443/hook?x=1".to_owned()));
    }
}
