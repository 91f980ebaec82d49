//! W3C Trace Context `traceparent` (<https://www.w3.org/TR/trace-context/>): parse, format and
//! child spans, so that one event can be followed from the webhook request through the queue to
//! the destination and the HubSpot calls made for it.
//!
//! The header is `{version}-{trace-id}-{parent-id}-{trace-flags}`, lowercase hex: version `00`
//! is exactly 55 characters; a trace id of 16 zero bytes or a parent id of 8 zero bytes is
//! invalid, and so is version `ff`. A later version is read by its first four fields when what
//! follows them starts with `-` (the specification's forward compatibility), and continued as
//! version `00`.
//!
//! No randomness here: the caller passes the new ids as bytes.

use core::fmt;

/// The name of the HTTP header.
pub const HEADER: &str = "traceparent";

/// The `sampled` trace flag (bit 0 of `trace-flags`).
pub const FLAG_SAMPLED: u8 = 0x01;

/// The length of a version `00` header.
pub const LEN: usize = 55;

/// A valid `traceparent`: the trace, the span that is the parent of the next hop, the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceParent {
    /// A new trace started here: `trace_id` and `span_id` are the caller's random bytes.
    /// `None` when either is all zeros (the specification's invalid ids).
    #[must_use]
    pub fn start(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(Self {
            trace_id,
            parent_id: span_id,
            flags,
        })
    }

    /// Reads a `traceparent` header value. `None` when it is not a valid one (the caller then
    /// starts a new trace, as the specification says).
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim_matches([' ', '\t']);
        let b = value.as_bytes();
        if b.len() < LEN {
            return None;
        }
        let version = hex_byte(&b[0..2])?;
        match version {
            0xff => return None,
            0x00 if b.len() != LEN => return None,
            0x00 => {}
            // A later version: the first four fields, followed by `-` and more if any.
            _ if b.len() > LEN && b[LEN] != b'-' => return None,
            _ => {}
        }
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        let mut trace_id = [0; 16];
        for (i, out) in trace_id.iter_mut().enumerate() {
            *out = hex_byte(&b[3 + 2 * i..5 + 2 * i])?;
        }
        let mut parent_id = [0; 8];
        for (i, out) in parent_id.iter_mut().enumerate() {
            *out = hex_byte(&b[36 + 2 * i..38 + 2 * i])?;
        }
        let flags = hex_byte(&b[53..55])?;
        Self::start(trace_id, parent_id, flags)
    }

    /// The same trace with `span_id` (the caller's random bytes) as the parent of the next hop:
    /// what a hop sends on its own outgoing requests. `None` when `span_id` is all zeros.
    #[must_use]
    pub fn child(&self, span_id: [u8; 8]) -> Option<Self> {
        Self::start(self.trace_id, span_id, self.flags)
    }

    /// The trace id's bytes.
    #[must_use]
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lowercase hex digits (the `trace_id` of a log line).
    #[must_use]
    pub fn trace_id_hex(&self) -> String {
        let mut out = String::with_capacity(32);
        push_hex(&mut out, &self.trace_id);
        out
    }

    /// The parent (span) id's bytes.
    #[must_use]
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    #[must_use]
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the `sampled` flag is set.
    #[must_use]
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// The version `00` header value: 55 lowercase characters.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(LEN);
        out.push_str("00-");
        push_hex(&mut out, &self.trace_id);
        out.push('-');
        push_hex(&mut out, &self.parent_id);
        out.push('-');
        push_hex(&mut out, &[self.flags]);
        f.write_str(&out)
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// Two lowercase hex digits (uppercase is invalid in `traceparent`).
fn hex_byte(two: &[u8]) -> Option<u8> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    Some(digit(two[0])? << 4 | digit(two[1])?)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The specification's example.
    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_specification_example() {
        let t = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            t.parent_id(),
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(t.flags(), 1);
        assert!(t.is_sampled());
        assert_eq!(t.to_string(), EXAMPLE);
        assert_eq!(t.to_string().len(), LEN);
        // Surrounding optional whitespace is allowed.
        assert_eq!(TraceParent::parse(&format!(" {EXAMPLE}\t")), Some(t));
    }

    #[test]
    fn rejects_invalid_values() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            // Too long for version 00.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // Uppercase hex.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Version ff, a non-hex version.
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Wrong separators, a non-hex digit.
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            // A later version followed by something that is not a new field.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in bad {
            assert_eq!(TraceParent::parse(value), None, "{value}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields_and_continued_as_00() {
        let later = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-adds";
        let t = TraceParent::parse(later).unwrap();
        assert_eq!(t.to_string(), EXAMPLE);
        assert!(TraceParent::parse(&later[..LEN]).is_some());
    }

    #[test]
    fn child_keeps_trace_and_flags_with_a_new_span() {
        let parent = TraceParent::parse(EXAMPLE).unwrap();
        let child = parent.child([1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_eq!(child.flags(), parent.flags());
        assert_eq!(
            child.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01"
        );
        assert_eq!(parent.child([0; 8]), None);
        // Unsampled flags travel as they came.
        let unsampled =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.child([9; 8]).unwrap().is_sampled());
    }

    #[test]
    fn start_refuses_zero_ids_and_round_trips() {
        assert_eq!(TraceParent::start([0; 16], [1; 8], FLAG_SAMPLED), None);
        assert_eq!(TraceParent::start([1; 16], [0; 8], FLAG_SAMPLED), None);
        let t = TraceParent::start([0xab; 16], [0xcd; 8], FLAG_SAMPLED).unwrap();
        assert_eq!(
            t.to_string(),
            "00-abababababababababababababababab-cdcdcdcdcdcdcdcd-01"
        );
        assert_eq!(TraceParent::parse(&t.to_string()), Some(t));
    }
}
