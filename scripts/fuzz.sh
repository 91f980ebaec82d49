#!/usr/bin/env bash
# Coverage-guided fuzzing of core's parsers with cargo-fuzz (libFuzzer); see FUZZING.md.
#
#   scripts/fuzz.sh smoke            build every target, run each for a few seconds (test.sh)
#   scripts/fuzz.sh long [TARGET…]   1,000,000 executions of each target (or of those named),
#                                    one after another; a summary line per target
#   scripts/fuzz.sh run TARGET [libFuzzer options…]   one target, your options
#   scripts/fuzz.sh list             the targets
#
# Installs what it needs when missing (ensure_fuzz_tools in tools.sh): a nightly toolchain
# (minimal profile; fuzzing only, the project builds on the pinned stable) and cargo-fuzz
# (pinned, in the tools cache).
# Every run is bounded: -timeout (a hang), -rss_limit_mb and -malloc_limit_mb (unbounded
# allocation). Crashes land in fuzz/artifacts/TARGET/; the committed seeds in fuzz/corpus/TARGET
# are only read, the corpus a run grows goes to fuzz/corpus-run/TARGET (not committed).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"

FUZZ_DIR="$ROOT/fuzz"
# Smoke: a fixed seed and a fixed count, so that test.sh is repeatable; the time bound only
# matters on a slower or busier machine (the slowest target runs ~9,000 inputs/s here).
SMOKE_RUNS="${HUBSPOT_EDGE_FUZZ_SMOKE_RUNS:-30000}"
SMOKE_SECONDS="${HUBSPOT_EDGE_FUZZ_SMOKE_SECONDS:-10}"
LONG_RUNS="${HUBSPOT_EDGE_FUZZ_RUNS:-1000000}"
# Per input: 10 s is a hang (a normal input takes microseconds). 2 GB RSS and 512 MB in one
# allocation are far above anything a 128 MB Worker isolate could hold.
LIMITS=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512)

targets() {
  sed -n 's/^name = "\([a-z0-9_]*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^hubspot-edge-fuzz$'
}

# cargo-fuzz is a cargo subcommand: run it through the nightly cargo. `-a` keeps debug
# assertions (overflow checks included) in the optimised build.
cargo_fuzz() {
  local sub="$1"
  shift
  (cd "$FUZZ_DIR" && PATH="$(dirname "$CARGO_FUZZ"):$PATH" \
    cargo "+$FUZZ_TOOLCHAIN" fuzz "$sub" -a "$@")
}

# run_target TARGET [options]: new inputs go to $RUN_CORPUS/TARGET (default fuzz/corpus-run).
run_target() {
  local target="$1" grown="${RUN_CORPUS:-$FUZZ_DIR/corpus-run}/$1"
  shift
  mkdir -p "$grown" "$FUZZ_DIR/corpus/$target"
  cargo_fuzz run "$target" "$grown" "$FUZZ_DIR/corpus/$target" -- "${LIMITS[@]}" "$@"
}

# "#1000000 DONE cov: 612 ft: 2190 corp: 190/9Kb …" and "Done 1000000 runs in 84 second(s)".
summarise() {
  local target="$1" log="$2"
  local done_line runs_line
  done_line="$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)"
  runs_line="$(grep -E '^Done [0-9]+ runs in' "$log" | tail -1 || true)"
  printf '%-18s %s | %s\n' "$target" "${runs_line:-no DONE line: see $log}" "$done_line"
}

mode="${1:-smoke}"
[ $# -gt 0 ] && shift
ensure_fuzz_tools
case "$mode" in
  list) targets ;;
  smoke)
    say "building the fuzz targets"
    cargo_fuzz build
    # Start from the committed seeds only, every time.
    export RUN_CORPUS="$FUZZ_DIR/target/smoke-corpus"
    rm -rf "$RUN_CORPUS"
    for t in $(targets); do
      say "fuzz smoke: $t ($SMOKE_RUNS runs, at most $SMOKE_SECONDS s)"
      log="$FUZZ_DIR/target/smoke-$t.log"
      if ! run_target "$t" -seed=1 -runs="$SMOKE_RUNS" -max_total_time="$SMOKE_SECONDS" \
        >"$log" 2>&1; then
        cat "$log" >&2
        say "fuzz target $t failed; the input is in fuzz/artifacts/$t/"
        exit 1
      fi
      summarise "$t" "$log" >&2
    done
    ;;
  long)
    mkdir -p "$FUZZ_DIR/logs"
    cargo_fuzz build
    list=("$@")
    failed=()
    [ ${#list[@]} -eq 0 ] && mapfile -t list < <(targets)
    for t in "${list[@]}"; do
      log="$FUZZ_DIR/logs/$t.log"
      say "fuzz long: $t ($LONG_RUNS runs; log $log)"
      start=$(date +%s)
      # One target's failure does not stop the others; the exit status reports it.
      if ! run_target "$t" -runs="$LONG_RUNS" -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log" >&2
        say "fuzz target $t failed; the input is in fuzz/artifacts/$t/"
        failed+=("$t")
        continue
      fi
      printf '%s wall %ss\n' "$(summarise "$t" "$log")" "$(( $(date +%s) - start ))"
    done
    if [ ${#failed[@]} -gt 0 ]; then
      say "failed: ${failed[*]}"
      exit 1
    fi
    ;;
  run)
    [ $# -ge 1 ] || { echo "usage: $0 run TARGET [libFuzzer options…]" >&2; exit 2; }
    run_target "$@"
    ;;
  *)
    echo "usage: $0 smoke | long [TARGET…] | run TARGET [options…] | list" >&2
    exit 2
    ;;
esac
