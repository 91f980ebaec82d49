//! The small HTTP/1.1 server under the test doubles (the HubSpot [mock](crate::MockHubSpot) and
//! hubspot-edge-tests' loopback `Destination`). Shared infrastructure, not a stable API.
//!
//! [`Server::start`] binds `127.0.0.1`, accepts on a thread and serves each connection on a
//! thread of its own: it reads a request (`Content-Length` or chunked body, answering
//! `Expect: 100-continue`), hands it to the handler, which answers through a [`Responder`] or
//! does not (the connection is then closed without an answer: a dropped connection), and, with
//! keep-alive, reads the next one. Dropping the [`Server`] shuts every open connection down,
//! ends every [`Responder::pause`], and joins every thread.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Reads and writes time out after this; an idle keep-alive connection is closed after it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// One request as read.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target: path and query, as sent.
    pub target: String,
    /// Header names (lowercase) and values, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the client lets the connection stay open (HTTP/1.1 unless `Connection: close`;
    /// HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

impl Request {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One response. `Content-Length` and `Connection` are added when it is written; a 204 is
/// written without a body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

type Handler = dyn Fn(Request, &mut Responder<'_>) + Send + Sync;

#[derive(Debug, Default)]
struct Conns {
    stopping: bool,
    /// Clones of open connections, shut down on drop so no thread stays blocked in a read.
    open: HashMap<u64, TcpStream>,
    next: u64,
    workers: Vec<JoinHandle<()>>,
}

struct Shared {
    conns: Mutex<Conns>,
    /// Signalled when `stopping` is set (ends [`Responder::pause`]).
    stopped: Condvar,
    keep_alive: bool,
    conn_thread: String,
    handler: Box<Handler>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Conns> {
        // A panicking handler cannot leave the bookkeeping inconsistent in a way that matters
        // to a test; keep serving rather than cascading the poison.
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running server. Stops on drop.
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `127.0.0.1:port` (0 picks a free port) and serves every request with `handler`,
    /// on threads named `{name}-accept` and `{name}-conn`. With `keep_alive`, a connection
    /// serves requests until the client closes it or asks to; without, it serves one request,
    /// answered with `Connection: close`.
    ///
    /// # Errors
    /// When the socket cannot be bound or the accept thread cannot be spawned.
    pub fn start(
        name: &str,
        port: u16,
        keep_alive: bool,
        handler: impl Fn(Request, &mut Responder<'_>) + Send + Sync + 'static,
    ) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            conns: Mutex::new(Conns::default()),
            stopped: Condvar::new(),
            keep_alive,
            conn_thread: format!("{name}-conn"),
            handler: Box::new(handler),
        });
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(Self {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let workers = {
            let mut c = self.shared.conns();
            c.stopping = true;
            for stream in c.open.values() {
                let _ = stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut c.workers)
        };
        self.shared.stopped.notify_all();
        // Wake the blocking accept() so the loop sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        for w in workers {
            let _ = w.join();
        }
        // Connections accepted between taking `workers` and the accept loop ending.
        let late = std::mem::take(&mut self.shared.conns().workers);
        for w in late {
            let _ = w.join();
        }
    }
}

/// How a handler answers the request it was given. Not answering closes the connection.
pub struct Responder<'a> {
    stream: &'a TcpStream,
    shared: &'a Shared,
    keep_alive: bool,
    /// Whether a response was written in full.
    answered: bool,
}

impl fmt::Debug for Responder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("keep_alive", &self.keep_alive)
            .field("answered", &self.answered)
            .finish_non_exhaustive()
    }
}

impl Responder<'_> {
    /// Writes `response` (once per request).
    ///
    /// # Errors
    /// When the write fails (the client went away); the connection is then closed.
    pub fn send(&mut self, response: &Response) -> std::io::Result<()> {
        write_response(self.stream, response, self.keep_alive)?;
        self.answered = true;
        Ok(())
    }

    /// Waits `d` unless the server stops first; true when the full time passed.
    pub fn pause(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let mut conns = self.shared.conns();
        loop {
            if conns.stopping {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            conns = match self.shared.stopped.wait_timeout(conns, deadline - now) {
                Ok((c, _)) => c,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        let mut c = shared.conns();
        if c.stopping {
            return;
        }
        let Ok(stream) = conn else { continue };
        let id = c.next;
        c.next += 1;
        if let Ok(clone) = stream.try_clone() {
            c.open.insert(id, clone);
        }
        c.workers.retain(|w| !w.is_finished());
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(shared.conn_thread.clone())
            .spawn(move || {
                serve(&stream, &conn_shared);
                conn_shared.conns().open.remove(&id);
            });
        if let Ok(handle) = spawned {
            c.workers.push(handle);
        }
    }
}

fn serve(stream: &TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    loop {
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            // Closed between requests (or the wake-up connect of a stopping server).
            Ok(None) => return,
            Err(e) => {
                let response = Response {
                    status: 400,
                    headers: vec![("Content-Type", "text/plain".into())],
                    body: e.message().as_bytes().to_vec(),
                };
                let _ = write_response(stream, &response, false);
                return;
            }
        };
        let mut responder = Responder {
            stream,
            shared,
            keep_alive: shared.keep_alive && request.keep_alive,
            answered: false,
        };
        (shared.handler)(request, &mut responder);
        if !responder.answered || !responder.keep_alive {
            // Without an answer this is abrupt, so the client sees the connection end.
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reads one request; `Ok(None)` on a clean end of stream before it.
///
/// # Errors
/// On a malformed or oversized request, and on read failures.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> Result<Option<Request>> {
    let mut head_len = 0usize;
    let mut line = String::new();
    // The request line, tolerating empty lines before it (RFC 9112 §2.2).
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Ok(None);
        }
        head_len += n;
        if head_len > MAX_HEAD_BYTES {
            return Err(Error::new("request head too large"));
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::new("malformed request line"));
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let http10 = version == Some("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            return Err(Error::new("connection closed inside the request head"));
        }
        head_len += n;
        if head_len > MAX_HEAD_BYTES {
            return Err(Error::new("request head too large"));
        }
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.is_empty() {
            break;
        }
        let (k, v) = trimmed
            .split_once(':')
            .ok_or_else(|| Error::new("malformed header line"))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let connection = get("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => !http10,
    };
    if get("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        // curl waits a second for this before sending bodies over 1 KiB.
        let w = reader.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    let chunked =
        get("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(len) = get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| Error::new("invalid content-length"))?;
        if len > MAX_BODY_BYTES {
            return Err(Error::new("body too large"));
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    }))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_hex = line.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(size_hex, 16).map_err(|_| Error::new("invalid chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                let n = reader.read_line(&mut line)?;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err(Error::new("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

fn write_response(
    mut stream: &TcpStream,
    response: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let status = response.status;
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in &response.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if status != 204 {
        head.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = head.into_bytes();
    if status != 204 {
        out.extend_from_slice(&response.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        207 => "Multi-Status",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        423 => "Locked",
        429 => "Too Many Requests",
        477 => "Migration in Progress",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::raw_exchange;

    #[test]
    fn answers_keeps_alive_and_rejects_malformed_requests() {
        let server = Server::start("server-test", 0, true, |req, responder| {
            let status = if req.method == "DELETE" { 204 } else { 200 };
            let _ = responder.send(&Response {
                status,
                headers: vec![("X-Target", req.target)],
                body: req.body,
            });
        })
        .unwrap();
        let host = server.addr().to_string();
        let timeout = Duration::from_secs(5);
        // Two requests on one connection; the second asks to close it.
        let raw = "POST /a?b=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi\
                   DELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n";
        let out = raw_exchange(&host, raw.as_bytes(), timeout).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nX-Target: /a?b=1\r\nContent-Length: 2\r\n\
             Connection: keep-alive\r\n\r\nhi\
             HTTP/1.1 204 No Content\r\nX-Target: /c\r\nConnection: close\r\n\r\n"
        );
        let out = raw_exchange(&host, b"GET / HTTP/1.1\r\nno colon\r\n\r\n", timeout).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n\
             Connection: close\r\n\r\nmalformed header line"
        );
    }
}
