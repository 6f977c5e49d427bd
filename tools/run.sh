#!/usr/bin/env bash
# run.sh — `make run`: serve Tollgate in demo mode (`serve --demo`) on the
# default config with everything a fresh machine lacks. Starts a private Redis
# when the configured one does not answer, says which providers are simulated
# (no API key in the environment), prints the demo key and a curl line, then
# execs the gateway. Without --demo a provider with no key is unusable.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=${TOLLGATE_CONFIG:-config/tollgate.yaml}
[ -x ./tollgate ] || { echo "run: ./tollgate is not built (run make)" >&2; exit 1; }
[ -f "$CONFIG" ] || { echo "run: $CONFIG not found" >&2; exit 1; }

# The redis: line of the config (plain scalar, optionally quoted).
REDIS_URL=$(sed -n 's/^redis:[[:space:]]*["'\'']\{0,1\}\([^"'\''#[:space:]]*\).*/\1/p' "$CONFIG" | head -1)
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}

redis_up() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(redis-cli -u "$1" ping 2>/dev/null)" = PONG ]
    else
        local hp=${1#redis://}; hp=${hp#*@}; hp=${hp%%/*}
        local host=${hp%:*} port=${hp##*:}
        [ "$host" = "$hp" ] && port=6379
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
    fi
}

if redis_up "$REDIS_URL"; then
    echo "run: Redis at $REDIS_URL answers"
elif [ "$REDIS_URL" = redis://127.0.0.1:6379/0 ] || [ "$REDIS_URL" = redis://localhost:6379/0 ] ||
     [ "$REDIS_URL" = redis://127.0.0.1:6379 ] || [ "$REDIS_URL" = redis://localhost:6379 ]; then
    mkdir -p var
    echo "run: no Redis at $REDIS_URL; starting a private redis-server on 127.0.0.1:6379 (data in var/, pid in var/redis.pid)"
    redis-server --bind 127.0.0.1 --port 6379 --dir "$PWD/var" --daemonize yes --save "" --appendonly no \
        --pidfile "$PWD/var/redis.pid" --logfile "$PWD/var/redis.log"
    for _ in $(seq 1 50); do redis_up "$REDIS_URL" && break; sleep 0.1; done
    redis_up "$REDIS_URL" || echo "run: warning: the private Redis did not come up (see var/redis.log); usage goes to the journal" >&2
    echo "run: stop it later with: kill \$(cat var/redis.pid)"
else
    echo "run: warning: Redis at $REDIS_URL does not answer; Tollgate serves anyway and journals usage to var/ until it does" >&2
fi

# Demo mode: providers whose key is not in the environment are answered by the built-in
# simulator, every answer marked x-tollgate-simulated: true and its spend kept apart.
# Pairs provider:ENV from one-line provider entries (`  name: { ..., api_key_env: ENV, ... }`).
mapfile -t pairs < <(sed -n 's/^[[:space:]]\{1,\}\([A-Za-z0-9_-]*\):[[:space:]]*{.*api_key_env:[[:space:]]*\([A-Za-z0-9_]*\).*/\1:\2/p' "$CONFIG")
[ ${#pairs[@]} -gt 0 ] || pairs=(deepseek:DEEPSEEK_API_KEY qwen:DASHSCOPE_API_KEY openai:OPENAI_API_KEY anthropic:ANTHROPIC_API_KEY)
simulated=()
for pair in "${pairs[@]}"; do
    env_name=${pair#*:}
    if [ -z "${!env_name:-}" ]; then
        simulated+=("${pair%%:*}")
        echo "run: $env_name is not set: ${pair%%:*} is simulated"
    else
        echo "run: $env_name is set: ${pair%%:*} is the real provider"
    fi
done
if [ ${#simulated[@]} -gt 0 ]; then
    echo "run: DEMO MODE: simulated providers answer with made-up text and token counts;"
    echo "run: their answers carry x-tollgate-simulated: true and reports show their spend apart"
fi

PORT=$(sed -n 's/^listen:[[:space:]]*["'\'']\{0,1\}[^"'\''[:space:]]*:\([0-9]*\).*/\1/p' "$CONFIG" | head -1)
PORT=${PORT:-8080}
cat <<MSG

  Demo gateway key: tg-demo-key
  Try it:
    curl -s localhost:$PORT/v1/chat/completions -H 'authorization: Bearer tg-demo-key' \\
      -H 'content-type: application/json' \\
      -d '{"model":"deepseek/deepseek-flash","messages":[{"role":"user","content":"hi"}]}'

MSG
mkdir -p var
exec ./tollgate serve --demo -c "$CONFIG"
