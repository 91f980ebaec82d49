//! A small blocking HTTP client for the tests: every status code is an answer, not an error;
//! only transport failures (refused, reset, timed out) are [`Error`]s.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

use serde_json::Value;

use crate::{Error, Result};

/// How long one request may take before it is a transport error.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A response, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lowercase) and values, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    /// When the body is not JSON; the message includes the status and the body.
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(format!(
                "response body is not json ({e}); status {}, body: {}",
                self.status,
                self.text()
            ))
        })
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Fails unless the status is `expected`, quoting the body (handy with `?` in scenarios).
    ///
    /// # Errors
    /// When the status differs.
    pub fn expect_status(&self, expected: u16) -> Result<&Self> {
        if self.status == expected {
            Ok(self)
        } else {
            Err(Error::new(format!(
                "expected status {expected}, got {}; body: {}",
                self.status,
                self.text()
            )))
        }
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        // A fresh connection per request: no stale pooled sockets across Worker reloads.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .timeout_global(Some(timeout))
        .allow_non_standard_methods(true)
        .build()
        .into()
}

/// Sends one request. `body` `None` sends no body at all.
///
/// # Errors
/// Transport failures and invalid method/URL/headers; never the status code.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<HttpResponse> {
    request_with_timeout(method, url, headers, body, DEFAULT_TIMEOUT)
}

/// Like [`request`], with a time limit for the whole exchange instead of [`DEFAULT_TIMEOUT`].
///
/// # Errors
/// Transport failures (including the timeout) and invalid method/URL/headers.
pub fn request_with_timeout(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse> {
    let agent = agent(timeout);
    let mut builder = ::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let result = match body {
        Some(bytes) => builder
            .body(bytes)
            .map_err(|e| Error::new(format!("invalid request {method} {url}: {e}")))
            .and_then(|req| agent.run(req).map_err(|e| transport(method, url, &e))),
        None => builder
            .body(())
            .map_err(|e| Error::new(format!("invalid request {method} {url}: {e}")))
            .and_then(|req| agent.run(req).map_err(|e| transport(method, url, &e))),
    };
    let mut response = result?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_vec()
        .map_err(|e| transport(method, url, &e))?;
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn transport(method: &str, url: &str, e: &ureq::Error) -> Error {
    Error::new(format!("{method} {url} failed: {e}"))
}

/// `GET url`, with `Authorization: Bearer <token>` when `bearer` is given.
///
/// # Errors
/// Transport failures only.
pub fn get(url: &str, bearer: Option<&str>) -> Result<HttpResponse> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("authorization", a))
        .into_iter()
        .collect();
    request("GET", url, &headers, None)
}

/// `POST url` with a JSON (`application/json`) body, and a bearer token when given.
///
/// # Errors
/// Transport failures only.
pub fn post(url: &str, body: &[u8], bearer: Option<&str>) -> Result<HttpResponse> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth.as_deref() {
        headers.push(("authorization", a));
    }
    request("POST", url, &headers, Some(body))
}

/// `POST url` with `value` serialised as the JSON body.
///
/// # Errors
/// Transport failures only.
pub fn post_json(url: &str, value: &Value, bearer: Option<&str>) -> Result<HttpResponse> {
    post(url, value.to_string().as_bytes(), bearer)
}

/// Writes `raw` to `host:port` as-is and returns everything the server sends until it closes
/// the connection or `timeout` passes without data. For malformed requests no client would
/// send (a lying `Content-Length`, a chunked body, a bad request line). Send
/// `Connection: close` in `raw` so the server closes after answering.
///
/// # Errors
/// When connecting or writing fails.
pub fn raw_exchange(host_port: &str, raw: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let mut stream = connect(host_port, timeout)?;
    stream.write_all(raw)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// A connection to `host_port` whose connect, reads and writes time out after `timeout`.
fn connect(host_port: &str, timeout: Duration) -> Result<TcpStream> {
    let addr = host_port
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| Error::new(format!("{host_port} resolves to no address")))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// `host:port` of an `http://host:port/...` URL.
pub fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Sends `POST`-style `method url` with `Transfer-Encoding: chunked` (no `Content-Length`):
/// `chunks` are written as HTTP/1.1 chunks from a thread of their own while the response is
/// read. With `finish` false the terminating chunk is never sent, so the body stays open: a
/// server that answers anyway did not wait for the whole body. Returns as soon as the response
/// is complete (by `Content-Length`, chunked framing, or the server closing).
///
/// # Errors
/// Connecting fails, or no complete response arrives within `timeout`.
pub fn chunked_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
    finish: bool,
    timeout: Duration,
) -> Result<HttpResponse> {
    let host_port = host_port(url);
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    let mut stream = connect(host_port, timeout)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host_port}\r\ntransfer-encoding: chunked\r\n\
         connection: close\r\n"
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut writer = stream.try_clone()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(head.as_bytes())?;
        for chunk in chunks.iter().filter(|c| !c.is_empty()) {
            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())?;
            writer.write_all(chunk)?;
            writer.write_all(b"\r\n")?;
        }
        if finish {
            writer.write_all(b"0\r\n\r\n")?;
        }
        writer.flush()
    });
    let read = read_response(&mut stream, method, url);
    // Ends the sender if it is still writing (a server that stopped reading).
    let _ = stream.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    read
}

/// Reads one HTTP/1.1 response from `stream`.
fn read_response(stream: &mut TcpStream, method: &str, url: &str) -> Result<HttpResponse> {
    let fail = |what: &str| Error::new(format!("{method} {url}: {what}"));
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let mut more = |buf: &mut Vec<u8>| -> Result<bool> {
        match stream.read(&mut tmp) {
            Ok(0) => Ok(false),
            Ok(n) => {
                buf.extend_from_slice(&tmp[..n]);
                Ok(true)
            }
            Err(e) => Err(fail(&format!("reading the response: {e}"))),
        }
    };
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if !more(&mut buf)? {
            return Err(fail("connection closed before a response"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = buf.split_off(head_end);
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            if !more(&mut body)? {
                return Err(fail("connection closed inside the body"));
            }
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut decoded = Vec::new();
        let mut at = 0;
        loop {
            let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
                if !more(&mut body)? {
                    return Err(fail("connection closed inside a chunk size"));
                }
                continue;
            };
            let size_text = String::from_utf8_lossy(&body[at..at + eol]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| fail("bad chunk size"))?;
            let start = at + eol + 2;
            while body.len() < start + size + 2 {
                if !more(&mut body)? {
                    return Err(fail("connection closed inside a chunk"));
                }
            }
            if size == 0 {
                break;
            }
            decoded.extend_from_slice(&body[start..start + size]);
            at = start + size + 2;
        }
        body = decoded;
    } else {
        while more(&mut body)? {}
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
