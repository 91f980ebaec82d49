//! Reporting helpers shared by the benchmark binaries (`src/bin/*-bench.rs`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

/// The `p` quantile (0–1) of `sorted` by nearest rank; NaN when empty.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Rounding a small positive index to usize is exact enough for a percentile.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Prints `BENCH name=<name> n=… p50_ms=… p99_ms=… max_ms=…` for latency samples in
/// milliseconds and returns the median.
pub fn report_ms(name: &str, mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    let p50 = percentile(&samples, 0.5);
    println!(
        "BENCH name={name} n={} p50_ms={p50:.1} p99_ms={:.1} max_ms={:.1}",
        samples.len(),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN)
    );
    p50
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&s, 0.5), 3.0);
        assert_eq!(percentile(&s, 0.99), 5.0);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
