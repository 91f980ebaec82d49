//! Input framing shared by the fuzz targets. Each target reads a few fixed-size numbers from the
//! front of the input and then text split on NUL bytes or laid out like an HTTP message, so that
//! the seed corpus (`fuzz/seeds.py`) can be written from the test vectors as readable files.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Reads fixed-size little-endian numbers from the front of the input; missing bytes read as 0.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts at the front of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        out
    }

    /// One byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// `N` raw bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        self.take()
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.data
    }
}

/// Splits `data` on NUL into exactly `N` parts (missing parts are empty; the last part keeps any
/// further NULs).
pub fn split_nul<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&b""[..]; N];
    let mut parts = data.splitn(N, |&b| b == 0);
    for slot in &mut out {
        *slot = parts.next().unwrap_or_default();
    }
    out
}

/// An HTTP-like message: a first line, `name: value` header lines, an empty line, the body.
/// Header lines that are not valid header names or values are skipped (they cannot reach the
/// code under test through a real HTTP stack either).
#[derive(Debug)]
pub struct Message<'a> {
    /// The first line, without its newline.
    pub first_line: &'a [u8],
    /// The headers that are valid.
    pub headers: HeaderMap,
    /// Everything after the empty line.
    pub body: &'a [u8],
}

/// Parses `data` as a [`Message`]; lines end in `\n`.
pub fn message(data: &[u8]) -> Message<'_> {
    let mut headers = HeaderMap::new();
    let (first_line, mut rest) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    loop {
        let (line, after) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &b""[..]),
        };
        rest = after;
        if line.is_empty() {
            break;
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let value = line[colon + 1..]
                .strip_prefix(b" ")
                .unwrap_or(&line[colon + 1..]);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(name, value);
            }
        }
    }
    Message {
        first_line,
        headers,
        body: rest,
    }
}
