//! Instruction counts of batch parsing, for `valgrind --tool=callgrind` (deterministic where
//! wall-clock time on these shared machines is not). Runs one variant 200 times on the bench
//! batch:
//!
//! - `current`: `hubspot_edge_core::event::parse_batch` (one pass, borrowed strings);
//! - `two-pass`: the previous design as a baseline, `Vec<&RawValue>` then each element again;
//! - `raw-only`: `Vec<&RawValue>` alone, the floor of any design that keeps raw event text;
//! - `none`: building the fixture only (subtract it).
//!
//! ```sh
//! cargo build --profile bench-native -p hubspot-edge-bench --example parse_variants
//! for v in none current two-pass raw-only; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/bench-native/examples/parse_variants $v 2>&1 | grep refs
//! done
//! ```

// An example that reports on stdout.
#![allow(clippy::print_stdout)]

use hubspot_edge_core::event::{parse_batch, Event};
use serde_json::value::RawValue;

fn main() {
    let body = hubspot_edge_bench::Fixture::new().body;
    let variant = std::env::args().nth(1).unwrap_or_else(|| "current".into());
    let mut events = 0;
    for _ in 0..200 {
        events += match variant.as_str() {
            "current" => parse_batch(&body)
                .expect("the bench batch parses")
                .iter()
                .filter(|e| e.event.is_ok())
                .count(),
            "two-pass" => {
                let raws: Vec<&RawValue> =
                    serde_json::from_slice(&body).expect("the bench batch parses");
                raws.iter().filter(|r| Event::parse(r).is_ok()).count()
            }
            "raw-only" => serde_json::from_slice::<Vec<&RawValue>>(&body)
                .expect("the bench batch parses")
                .len(),
            _ => 0,
        };
    }
    println!("{variant}: {events} events");
}
