#!/bin/sh
# install_test.sh BUILD_DIR SOURCE_DIR: what `cmake --install` puts down is
# enough to build on Ferry with pkg-config alone. Installs BUILD_DIR into a
# fresh prefix, compiles examples/custom-worker and a small client program
# with nothing but `pkg-config --cflags --libs ferry` (PKG_CONFIG_PATH at the
# prefix), then runs both with LD_LIBRARY_PATH at the prefix against the
# installed ferry-broker and ferry-engine: the worker must register and
# serve use.lua, the client must get a script's result.
# FERRY_INSTALL_TEST_CFLAGS: more flags for cc (the sanitizers of a
# FERRY_SANITIZE build, whose libferry needs them).
set -eu
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d /tmp/ferry-install-test-XXXXXX)
pids=""
cleanup() {
  rc=$?
  for p in $pids; do kill "$p" 2>/dev/null || true; done
  for p in $pids; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    for f in "$tmp"/*.log; do
      [ -f "$f" ] && { echo "---- $f"; tail -n 20 "$f"; }
    done
    echo "install_test: FAILED (kept $tmp)"
  else
    rm -rf "$tmp"
  fi
  exit $rc
}
trap cleanup EXIT
fail() {
  echo "install_test: $*" >&2
  exit 1
}

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
pc=$(find "$prefix" -name ferry.pc)
[ -n "$pc" ] || fail "no ferry.pc installed"
libdir=$(dirname "$(dirname "$pc")")
for f in bin/ferry-broker bin/ferry-engine bin/ferry-worker bin/ferry include/ferry/client.h \
  include/ferry/worker.h share/man/man1/ferry-broker.1.gz share/man/man1/ferry.1.gz; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
soname=$(readelf -d "$libdir/libferry.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libferry.so.0 ] || fail "libferry.so's soname is '$soname', want libferry.so.0"
[ -e "$libdir/$soname" ] || fail "no $libdir/$soname"

# The public headers stand alone: these four and nothing else (no lib/ header,
# no generated protobuf header); libferry exports their API and nothing more.
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./ferry/client.h ./ferry/timer.h ./ferry/value.h ./ferry/worker.h " ] ||
  fail "installed headers: $headers"
others=$(nm -D --defined-only "$libdir/libferry.so" | awk '$2 ~ /[TDBR]/ && $3 !~ /^ferry_/ {print $3}')
[ -z "$others" ] || fail "libferry exports more than the API: $(echo $others | head -c 300)"

# Out of the source tree: only the prefix's headers can be found.
mkdir "$tmp/cc"
cp "$src/examples/custom-worker/kv_worker.c" "$tmp/cc/"
cat >"$tmp/cc/client.c" <<'C'
#include <ferry/client.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    char err[256];
    ferry_client *c = ferry_client_new(argc > 1 ? argv[1] : "", err, sizeof err);
    if (!c) {
        fprintf(stderr, "client: %s\n", err);
        return 1;
    }
    const char *src = "print('from the engine') return 6 * 7";
    ferry_result r;
    int rc = 1;
    if (ferry_client_run(c, src, strlen(src), "install", NULL, 0, 5000, &r) == FERRY_OK) {
        int64_t v;
        size_t len;
        const char *out = ferry_result_output(&r, &len);
        if (ferry_result_ok(&r) && ferry_result_nvalues(&r) == 1 &&
            ferry_value_get_int(ferry_result_value(&r, 0), &v) == FERRY_OK && v == 42) {
            printf("result 42, output: %.*s", (int)len, out);
            rc = 0;
        }
        ferry_result_fini(&r);
    }
    ferry_client_destroy(&c);
    return rc;
}
C
PKG_CONFIG_PATH=$libdir/pkgconfig
export PKG_CONFIG_PATH
flags=$(pkg-config --cflags --libs ferry) || fail "pkg-config --cflags --libs ferry failed"
echo "pkg-config --cflags --libs ferry: $flags"
extra=${FERRY_INSTALL_TEST_CFLAGS:-}
cd "$tmp/cc"
${CC:-cc} -std=c11 -Wall -Wextra -Werror $extra -o kv-worker kv_worker.c $flags ||
  fail "examples/custom-worker does not compile against the installed copy"
${CC:-cc} -std=c11 -Wall -Wextra -Werror $extra -o client client.c $flags ||
  fail "a client program does not compile against the installed copy"

LD_LIBRARY_PATH=$libdir
export LD_LIBRARY_PATH
ldd ./kv-worker | grep -q "libferry.so.0 => $libdir/" || fail "kv-worker does not load $libdir's libferry"
./kv-worker --help >"$tmp/help.txt" || fail "kv-worker --help"
grep -q '^usage: ferry-example-worker' "$tmp/help.txt" || fail "kv-worker --help: no usage line"

# The installed daemons on endpoints of their own (ipc: no ports to collide).
ep=ipc://$tmp/ferry
bin=$prefix/bin
"$bin/ferry-broker" --clients "$ep-clients" --commands "$ep-commands" --engines "$ep-engines" \
  --workers "$ep-workers" >"$tmp/broker.log" 2>&1 &
pids="$pids $!"
"$bin/ferry-engine" --commands "$ep-commands" --engines "$ep-engines" --slots 4 \
  >"$tmp/engine.log" 2>&1 &
pids="$pids $!"
./kv-worker --workers "$ep-workers" >"$tmp/kv-worker.log" 2>&1 &
pids="$pids $!"

i=0
until "$bin/ferry" stats --broker "$ep-clients" --timeout 1 >"$tmp/stats.txt" 2>&1 &&
  grep -q 'kv.get, kv.keys, kv.set, kv.wait' "$tmp/stats.txt" &&
  grep -q '^engines  *1$' "$tmp/stats.txt"; do
  i=$((i + 1))
  [ $i -lt 50 ] || fail "the worker and the engine did not register within 10 s"
  sleep 0.2
done
echo "kv-worker registered kv.get, kv.keys, kv.set, kv.wait"

"$bin/ferry" run --broker "$ep-clients" --timeout 10 "$src/examples/custom-worker/use.lua" Ferry \
  >"$tmp/use.txt" 2>&1 || { cat "$tmp/use.txt"; fail "ferry run use.lua"; }
grep -q "$(printf '^kv.get greeting:\thello, Ferry\tinteger$')" "$tmp/use.txt" ||
  { cat "$tmp/use.txt"; fail "use.lua: no 'kv.get greeting: hello, Ferry integer'"; }
echo "ferry run use.lua through kv-worker: ok"

./client "$ep-clients" >"$tmp/client.txt" 2>&1 || { cat "$tmp/client.txt"; fail "client program"; }
grep -q '^result 42, output: from the engine$' "$tmp/client.txt" || { cat "$tmp/client.txt"; fail "client output"; }
echo "client program on libferry: ok"
echo "install_test: passed"
