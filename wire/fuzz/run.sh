#!/usr/bin/env bash
# Runs fuzz targets one after another, one libFuzzer process each, and prints a Markdown
# table row per target: executions, seconds, corpus size, crashes. Used by `make fuzz`.
#
#   wire/fuzz/run.sh [-n RUNS | -t SECONDS] [-s SANITIZER] [TARGET...]
#
# -n: libFuzzer's -runs (executions, counting the corpus read at the start); -t: its
# -max_total_time. Default: every target in fuzz_targets/, 60 s each. -s: cargo fuzz's
# sanitizer, `address` (the default) or `none` (faster; the code fuzzed forbids `unsafe`,
# so what it gives up is checking the dependencies' unsafe code). Either way the targets
# are built with debug assertions, so an arithmetic overflow is a crash. The corpus grows in
# corpus/TARGET (not committed); the small hand-made seeds in seeds/TARGET (committed,
# with the reproducers of past crashes) are read too. A crash stops the run: its input is
# in artifacts/TARGET/. Needs nightly and cargo-fuzz. NICE (default "nice -n 19") goes
# in front of every run.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz=$PWD/fuzz
limit="-max_total_time=60"
build=(-a)
while getopts "n:t:s:" opt; do
  case $opt in
    n) limit="-runs=$OPTARG" ;;
    t) limit="-max_total_time=$OPTARG" ;;
    # Each sanitizer builds in its own directory, so switching does not rebuild the other.
    s) [ "$OPTARG" = address ] || build=(-a -s "$OPTARG" --target-dir "$fuzz/target/sanitizer-$OPTARG") ;;
    *) echo "usage: $0 [-n RUNS | -t SECONDS] [-s SANITIZER] [TARGET...]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in "$fuzz"/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
read -r -a nice_cmd <<<"${NICE-nice -n 19}"
cargo +nightly fuzz build "${build[@]}" >&2
echo "| target | executions | seconds | exec/s | corpus (files / bytes) | crashes |"
echo "|--------|-----------:|--------:|-------:|-----------------------:|--------:|"
for t in "${targets[@]}"; do
  mkdir -p "$fuzz/corpus/$t" "$fuzz/artifacts/$t"
  dirs=("$fuzz/corpus/$t")
  [ -d "$fuzz/seeds/$t" ] && dirs+=("$fuzz/seeds/$t")
  log=$fuzz/artifacts/$t/last-run.log
  found() { find "$fuzz/artifacts/$t" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' \) | wc -l; }
  before=$(found)
  start=$(date +%s)
  status=0
  "${nice_cmd[@]}" cargo +nightly fuzz run "${build[@]}" "$t" "${dirs[@]}" -- "$limit" -print_final_stats=1 >"$log" 2>&1 || status=$?
  secs=$(( $(date +%s) - start ))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$fuzz/corpus/$t" -type f | wc -l)
  bytes=$(find "$fuzz/corpus/$t" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  crashes=$(( $(found) - before ))
  echo "| \`$t\` | ${runs:-?} | $secs | ${rate:-?} | $files / $bytes | $crashes |"
  if [ "$status" -ne 0 ]; then
    echo "$t failed (exit $status); its log: $log" >&2
    tail -40 "$log" >&2
    exit 1
  fi
done
