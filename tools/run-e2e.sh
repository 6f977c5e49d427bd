#!/usr/bin/env bash
# run-e2e.sh — end-to-end tests: the real binary ($TOLLGATE_BIN), its simulator
# and a private redis-server on a free loopback port, driven by node:test with
# the official SDKs. Redis is stopped whatever happens; the exit status is node's.
#   TOLLGATE_BIN=/abs/path/tollgate tools/run-e2e.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

: "${TOLLGATE_BIN:?set TOLLGATE_BIN to the absolute path of the tollgate binary}"
[ -x "$TOLLGATE_BIN" ] || { echo "run-e2e: $TOLLGATE_BIN is not executable" >&2; exit 1; }

# npm ci when node_modules is missing, incomplete (npm writes .package-lock.json last) or
# older than the lock file.
E2E=$ROOT/tests/e2e
if [ ! -f "$E2E/node_modules/.package-lock.json" ] || [ "$E2E/package-lock.json" -nt "$E2E/node_modules" ]; then
    echo "== npm ci (tests/e2e)"
    (cd "$E2E" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$E2E/node_modules"
fi

# A free port: bind to 0 and let the kernel choose. Tiny race with redis
# binding it, acceptable on a test machine.
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

RDIR=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-e2e-redis.XXXXXX")
REDIS_PID=""
cleanup() {
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
    rm -rf "$RDIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no --dir "$RDIR" \
    --logfile "$RDIR/redis.log" --daemonize no &
REDIS_PID=$!
for _ in $(seq 1 50); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$PORT" ping >/dev/null 2>&1 || { echo "run-e2e: redis-server did not start" >&2; cat "$RDIR/redis.log" >&2; exit 1; }

export TOLLGATE_BIN TG_REDIS_PORT=$PORT TG_REDIS_URL=redis://127.0.0.1:$PORT/0 TG_REPO_ROOT=$ROOT
echo "== e2e: $TOLLGATE_BIN, redis on 127.0.0.1:$PORT"

if [ $# -gt 0 ]; then files=("$@"); else files=("$E2E"/*.test.mjs); fi
set +e
node --test --test-concurrency=1 "${files[@]}"
rc=$?
set -e
exit $rc
