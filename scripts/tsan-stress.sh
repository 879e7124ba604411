#!/usr/bin/env bash
# The C core's thread stress (test/native/stress.c) under ThreadSanitizer, every mode: threads in
# one process, one handle each. zig 0.11 cannot link TSan, so this uses the system gcc (Debian's).
# Takes about a minute; not part of `npm test`. Usage: scripts/tsan-stress.sh [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-20000}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -std=gnu11 -O1 -g -fsanitize=thread -Wall -Wextra -Wno-tsan -o "$out/stress" test/native/stress.c \
  csrc/segment.c csrc/participants.c csrc/events.c csrc/ring.c csrc/recovery.c csrc/wait.c csrc/hooks.c -lpthread
fails=0
for flags in "" w b wb; do
  for spec in "SPSC 1 1" "MPSC 3 1" "SPMC 1 3" "MPMC 2 2" "BROADCAST 1 3"; do
    # halt_on_error: a data race is a failure, not a warning
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" timeout 300 "$out/stress" $spec "$n" 4096 512 "$flags" || { echo "^^^ failed: $spec $flags"; fails=$((fails + 1)); }
  done
done
TSAN_OPTIONS="halt_on_error=1" timeout 300 "$out/stress" BROADCAST 1 0 "$((n * 10))" 4096 4000 j || { echo "^^^ failed: joiners"; fails=$((fails + 1)); }
echo "tsan stress: $fails failing runs"
[ "$fails" -eq 0 ]
