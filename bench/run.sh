#!/usr/bin/env bash
# make bench: non-streamed 1 KB chat requests on loopback, measured three
# ways in one run — straight to the simulator, through nginx proxy_pass (when
# nginx is installed), through Tollgate — with the same wrk load. Prints
# requests/s, p50, p99, CPU µs per request of the front process, its RSS,
# and Tollgate's ratios to the baselines (with a row for the same request
# answered from the response cache: a key with `cache:`, every request after
# the first a hit); then the same chat load over TLS
# (keep-alive connections, one self-signed P-256 certificate made here for
# both), Tollgate's TLS listener against nginx terminating TLS. Then the
# gateway's start-up time
# and idle RSS, and a streaming run (bench/stream.mjs): BENCH_STREAMS
# concurrent SSE streams held open, straight to the simulator and through
# Tollgate, with time to first token of probe streams sent meanwhile and the
# gateway's RSS per open stream. Starts and stops only what it started.
# Knobs: BENCH_SECONDS (10), BENCH_CONNS (50), BENCH_WORKERS (1),
# BENCH_STREAMS (1000; 0 skips the streaming run), BENCH_MODE (all | rps | stream),
# BENCH_KEEP (set: keep the work directory with the logs),
# BENCH_UPSTREAM (plain | tls): tls puts the simulator behind nginx `listen ssl
# http2` with a private CA made here (bench/nginx-origin.conf.in) and measures
# the provider leg over TLS instead: nginx proxy_pass https:// with a keep-alive
# pool (bench/nginx-tlsup.conf.in) against Tollgate over its HTTP/1.1 pool and
# over HTTP/2 (`http2: true`), both trusting the CA through `ca_file:`, with the
# connections each front opened to the provider (from the origin's log).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${BENCH_SECONDS:-10}
CONNS=${BENCH_CONNS:-50}
WORKERS=${BENCH_WORKERS:-1}
STREAMS=${BENCH_STREAMS:-1000}
MODE=${BENCH_MODE:-all}
UPSTREAM=${BENCH_UPSTREAM:-plain}
case "$UPSTREAM" in plain | tls) ;; *) echo "bench: BENCH_UPSTREAM must be plain or tls"; exit 2 ;; esac
# Descriptors per process, each under `ulimit -n` (children inherit it): over
# plain HTTP/1.1 each stream holds a client socket and an upstream socket in the
# gateway (two), one in the simulator and one in the load generator. With
# BENCH_UPSTREAM=tls the gateway's calls are multiplexed on HTTP/2 (`http2:
# true`, up to 1000 streams a connection), so it holds one per stream plus a
# few connections, and so does the TLS origin (one to the simulator per
# stream) and the load generator (HTTP/2 straight to the origin, one socket
# per stream to the gateway). Raise the limit or shrink the run to fit.
per_stream=2; [ "$UPSTREAM" = tls ] && per_stream=1
want_fds=$((STREAMS * per_stream + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$want_fds" ]; then
  ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  fit=$(( ($(ulimit -n) - 1024) / per_stream ))
  if [ "$STREAMS" -gt "$fit" ]; then echo "bench: ulimit -n $(ulimit -n) allows $fit streams, not $STREAMS"; STREAMS=$fit; fi
fi
NOFILE=$(ulimit -n); [ "$NOFILE" = unlimited ] && NOFILE=65536
BIN=${TOLLGATE_BIN:-./tollgate}
command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install wrk)"; exit 1; }
DIR=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true
  if [ -n "${BENCH_KEEP:-}" ]; then echo "bench: kept $DIR"; else rm -rf "$DIR"; fi; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "bench: port $1 never opened"; exit 1; }
# CPU ticks and RSS of a process and its children (nginx's workers).
family() { echo "$1" $(pgrep -P "$1" || true); }
ticks() { local t=0 p; for p in $(family "$1"); do t=$((t + $(awk '{print $14+$15}' /proc/"$p"/stat))); done; echo $t; }
rss_kb() { local t=0 p; for p in $(family "$1"); do t=$((t + $(awk '/VmRSS/{print $2}' /proc/"$p"/status))); done; echo $t; }

SIM=$(free_port); GW=$(free_port); NGX=$(free_port); RDS=$(free_port); GWTLS=$(free_port); NGXTLS=$(free_port)
ORIG=$(free_port); GWH2=$(free_port); NGXUP=$(free_port)
# One certificate for both TLS fronts.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$DIR/tls.key" -out "$DIR/tls.pem" >/dev/null 2>&1
"$BIN" simulate --host 127.0.0.1 --port "$SIM" >"$DIR/sim.log" 2>&1 & PIDS+=($!)
redis-server --port "$RDS" --bind 127.0.0.1 --save "" --appendonly no >"$DIR/redis.log" 2>&1 & PIDS+=($!)
wait_port "$SIM"; wait_port "$RDS"

KEYHASH=$(printf %s "${BENCH_KEY:-tg-demo-key}" | sha256sum | cut -d' ' -f1)
CACHE_KEY=tg-bench-cached  # a key whose requests are answered from the response cache
CACHEHASH=$(printf %s "$CACHE_KEY" | sha256sum | cut -d' ' -f1)
# The deepseek provider (the bench's model): simulated, or in TLS mode the
# simulator behind the TLS origin with the private CA.
DEEPSEEK="base_url: https://api.deepseek.com/v1, api_key_env: TG_BENCH_UNSET_1"
if [ "$UPSTREAM" = tls ]; then
  # A private CA and the origin's certificate (localhost and 127.0.0.1) signed by it.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=Tollgate bench CA" \
    -keyout "$DIR/ca.key" -out "$DIR/ca.pem" >/dev/null 2>&1
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$DIR/origin.key" -out "$DIR/origin.csr" >/dev/null 2>&1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$DIR/origin.ext"
  openssl x509 -req -in "$DIR/origin.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" -CAcreateserial -days 2 \
    -extfile "$DIR/origin.ext" -out "$DIR/origin.pem" >/dev/null 2>&1
  command -v nginx >/dev/null || { echo "bench: BENCH_UPSTREAM=tls needs nginx (tools/deps.sh bench)"; exit 1; }
  mkdir -p "$DIR/origin-body" "$DIR/nginx-tlsup-body"
  # The pace bench/stream.mjs asks for, set by the origin (Tollgate strips x-sim-* toward a provider).
  SIMPACE=""; [ "$MODE" = stream ] && SIMPACE="proxy_set_header x-sim-tps ${BENCH_TPS:-2}; proxy_set_header x-sim-output-tokens ${BENCH_TOKENS:-60};"
  sed -e "s|@DIR@|$DIR|g" -e "s|@SIMPORT@|$SIM|" -e "s|@ORIGINPORT@|$ORIG|" -e "s|@NOFILE@|$NOFILE|g" \
    -e "s|@SIMPACE@|$SIMPACE|" bench/nginx-origin.conf.in >"$DIR/origin.conf"
  nginx -c "$DIR/origin.conf" -e "$DIR/origin-error.log" >/dev/null 2>&1 & PIDS+=($!)
  wait_port "$ORIG"
  export TG_BENCH_UPKEY=sk-bench
  DEEPSEEK="base_url: https://127.0.0.1:$ORIG/deepseek/v1, api_key_env: TG_BENCH_UPKEY, ca_file: $DIR/ca.pem"
fi
# gw_config FILE LISTEN-LINES [DEEPSEEK-EXTRA]
gw_config() {
cat >"$1" <<YAML
listen:
$2
workers: $WORKERS
redis: redis://127.0.0.1:$RDS/0
log_level: warn
journal: $1.journal
include: [$PWD/config/routes.yaml, $PWD/config/prices.yaml]
simulator: { url: "http://127.0.0.1:$SIM", when_no_key: true, embedded: false }
providers:
  deepseek:  { dialect: openai, $DEEPSEEK, region: cn${3:-} }
  qwen:      { dialect: openai,    base_url: https://dashscope-intl.aliyuncs.com/compatible-mode/v1, api_key_env: TG_BENCH_UNSET_2, region: sg }
  openai:    { dialect: openai,    base_url: https://api.openai.com/v1, api_key_env: TG_BENCH_UNSET_3, region: us }
  anthropic: { dialect: anthropic, base_url: https://api.anthropic.com, api_key_env: TG_BENCH_UNSET_4, region: us }
  # The other vendors config/prices.yaml prices (a price naming an unknown
  # provider is an error); only chinese-cheap routes to kimi and glm.
  qwen-cn:   { dialect: openai,    base_url: https://dashscope.aliyuncs.com/compatible-mode/v1, api_key_env: TG_BENCH_UNSET_5, region: cn }
  kimi:      { dialect: openai,    base_url: https://api.moonshot.ai/v1, api_key_env: TG_BENCH_UNSET_6 }
  glm:       { dialect: openai,    base_url: https://api.z.ai/api/paas/v4, api_key_env: TG_BENCH_UNSET_7 }
  minimax:   { dialect: openai,    base_url: https://api.minimax.io/v1, api_key_env: TG_BENCH_UNSET_8 }
  stepfun:   { dialect: openai,    base_url: https://api.stepfun.com/v1, api_key_env: TG_BENCH_UNSET_9 }
  mimo:      { dialect: openai,    base_url: https://api.xiaomimimo.com/v1, api_key_env: TG_BENCH_UNSET_10 }
  openrouter: { dialect: openai,   base_url: https://openrouter.ai/api/v1, api_key_env: TG_BENCH_UNSET_11 }
keys:
  - { name: bench, sha256: "$KEYHASH" }
  - { name: bench-cached, sha256: "$CACHEHASH", cache: { ttl_s: 3600 } }
YAML
}
# A streaming run over the TLS origin multiplexes the provider leg (http2: true).
GWH2OPT=""; [ "$UPSTREAM" = tls ] && [ "$MODE" = stream ] && GWH2OPT=", http2: true"
gw_config "$DIR/tollgate.yaml" "  - 127.0.0.1:$GW
  - { address: 127.0.0.1:$GWTLS, tls: { cert: $DIR/tls.pem, key: $DIR/tls.key } }" "$GWH2OPT"
"$BIN" serve -c "$DIR/tollgate.yaml" >/dev/null 2>"$DIR/gw.log" & GWPID=$!; PIDS+=($GWPID)
# Start-up: from the spawn above to the first accepted connection (polled
# without sleeping, so the figure is good to about a millisecond).
t_spawn=$(date +%s%N)
for _ in $(seq 20000); do (exec 3<>/dev/tcp/127.0.0.1/"$GW") 2>/dev/null && break; done
STARTUP_MS=$(( ($(date +%s%N) - t_spawn) / 1000000 ))
wait_port "$GW"
sleep 0.2
IDLE_KB=$(rss_kb "$GWPID")

NGXPID=""
if command -v nginx >/dev/null; then
  sed -e "s|@WORKERS@|$WORKERS|" -e "s|@DIR@|$DIR|g" -e "s|@SIMPORT@|$SIM|" -e "s|@PORT@|$NGX|" -e "s|@TLSPORT@|$NGXTLS|" \
      bench/nginx.conf.in >"$DIR/nginx.conf"
  nginx -c "$DIR/nginx.conf" -e "$DIR/nginx-error.log" >/dev/null 2>&1 & NGXPID=$!; PIDS+=($NGXPID)
  wait_port "$NGX"; wait_port "$NGXTLS"
fi

# One wrk run; prints "rps p50_ms p99_ms cpu_us_per_req rss_mb" for the
# process whose CPU we charge (the front), or "-" for the direct run.
# RUN_CONNS / RUN_SCRIPT override the connections and the script (paced runs).
run() {
  local url=$1 pid=$2 out t0 t1 reqs conns=${RUN_CONNS:-$CONNS} script=${RUN_SCRIPT:-bench/post.lua}
  wrk -t1 -c"$conns" -d1s -s "$script" "$url" >/dev/null 2>&1 || true  # warm-up
  [ -n "$pid" ] && t0=$(ticks "$pid")
  out=$(wrk -t1 -c"$conns" -d"${SECS}s" --latency -s "$script" "$url")
  [ -n "$pid" ] && t1=$(ticks "$pid")
  echo "$out" >>"$DIR/wrk.log"
  reqs=$(echo "$out" | awk '/requests in/{print $1}')
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
  p50=$(echo "$out" | awk '$1=="50%"{print $2}')
  p99=$(echo "$out" | awk '$1=="99%"{print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/{print $NF}')
  [ -n "$non2xx" ] && echo "bench: warning: $non2xx non-2xx answers from $url" >&2
  if [ -n "$pid" ]; then
    local hz; hz=$(getconf CLK_TCK)
    local cpu; cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$hz" 'BEGIN{printf "%.1f", (b-a)*1e6/hz/n}')
    echo "$rps $p50 $p99 $cpu $(( $(rss_kb "$pid") / 1024 ))"
  else
    echo "$rps $p50 $p99 - -"
  fi
}

echo "bench: gateway start-up ${STARTUP_MS} ms, idle RSS $((IDLE_KB / 1024)).$(( (IDLE_KB % 1024) * 10 / 1024 )) MB"

# The streaming run: prints its table and returns. With BENCH_UPSTREAM=tls the
# direct baseline is HTTP/2 straight to the TLS origin and the gateway's calls
# go there multiplexed (http2: true); "fds" is the gateway's open descriptors
# and "up conns" its connections to the origin, both sampled with every stream open.
streams() {
  [ "$STREAMS" -gt 0 ] || return 0
  command -v node >/dev/null || { echo "bench: node is missing: no streaming run"; return 0; }
  echo
  local direct="http://127.0.0.1:$SIM/deepseek/v1/chat/completions" dname="direct (simulator)"
  if [ "$UPSTREAM" = tls ]; then
    direct="https://127.0.0.1:$ORIG/deepseek/v1/chat/completions"; dname="direct (TLS origin, h2)"
    export BENCH_CA="$DIR/ca.pem" BENCH_UPPORT="$ORIG"
    echo "bench: provider leg over TLS, HTTP/2 multiplexed (http2: true) to nginx on :$ORIG in front of the simulator"
  fi
  echo "bench: $STREAMS concurrent SSE streams held open (60 tokens at 2 tokens/s each), TTFT of 200 probe streams sent meanwhile"
  local sd st before
  sd=$(node bench/stream.mjs "$direct" "$STREAMS")
  sleep 1
  before=$(rss_kb "$GWPID")
  st=$(node bench/stream.mjs "http://127.0.0.1:$GW/v1/chat/completions" "$STREAMS" "$GWPID")
  echo "$sd" >>"$DIR/stream.log"; echo "$st" >>"$DIR/stream.log"
  local j='const o=JSON.parse(process.argv[1]);console.log([o.ok,o.failed,o.ttft_p50_ms,o.ttft_p99_ms,o.burst_ttft_p99_ms,o.rss_kb??"-",o.fds??"-",o.up_conns??"-"].join(" "))'
  printf '%-24s %8s %7s %10s %10s %12s %12s %7s %9s\n' target streams failed "TTFT p50" "TTFT p99" "burst p99" "RSS/stream" fds "up conns"
  read -r ok fl p50 p99 bp _ <<<"$(node -e "$j" "$sd")"
  printf '%-24s %8s %7s %10s %10s %12s %12s %7s %9s\n' "$dname" "$ok" "$fl" "${p50} ms" "${p99} ms" "${bp} ms" - - -
  local dp99=$p99 dp50=$p50
  read -r ok fl p50 p99 bp rss fds upc <<<"$(node -e "$j" "$st")"
  local per=$(( (rss - before) * 1024 / (ok > 0 ? ok : 1) ))
  printf '%-24s %8s %7s %10s %10s %12s %12s %7s %9s\n' "tollgate" "$ok" "$fl" "${p50} ms" "${p99} ms" "${bp} ms" "$per B" "$fds" "$upc"
  echo
  echo "tollgate added TTFT p50: $(awk -v a="$p50" -v b="$dp50" 'BEGIN{printf "%.2f", a-b}') ms, p99: $(awk -v a="$p99" -v b="$dp99" 'BEGIN{printf "%.2f", a-b}') ms; RSS with $ok streams open: $((rss / 1024)) MB ($per bytes per stream over $((before / 1024)) MB before)"
  local gst=0
  kill -0 "$GWPID" 2>/dev/null || { wait "$GWPID" || gst=$?; echo "bench: the gateway exited (status $gst)"; }
  if grep -q '"level":"error"' "$DIR/gw.log"; then echo "bench: the gateway logged errors:"; grep '"level":"error"' "$DIR/gw.log" | head -3; fi
  if [ -s "$DIR/origin-error.log" ] && grep -qv '\[notice\]' "$DIR/origin-error.log"; then echo "bench: the TLS origin logged:"; grep -v '\[notice\]' "$DIR/origin-error.log" | head -3; fi
}
if [ "$MODE" = stream ]; then streams; exit 0; fi

# BENCH_UPSTREAM=tls: the provider leg over TLS. Connections each front opened
# to the origin are the connection serials new in the origin's access log
# (nginx numbers connections in order) over the front's runs.
conn_max() { sort -n "$DIR/origin-access.log" 2>/dev/null | tail -1 || true; }
conns_since() { sleep 0.3; awk -v m="${1:-0}" '$1 > m' "$DIR/origin-access.log" | sort -u | wc -l; }
ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.3f", (v+0) / 1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", (v+0) * 1000 }'; }
tls_upstream() {
  local h2pid ngxpid m
  gw_config "$DIR/tollgate-h2.yaml" "  - 127.0.0.1:$GWH2" ", http2: true"
  "$BIN" serve -c "$DIR/tollgate-h2.yaml" >/dev/null 2>"$DIR/gw-h2.log" & h2pid=$!; PIDS+=($h2pid)
  sed -e "s|@WORKERS@|$WORKERS|" -e "s|@DIR@|$DIR|g" -e "s|@ORIGINPORT@|$ORIG|" -e "s|@PORT@|$NGXUP|" \
      bench/nginx-tlsup.conf.in >"$DIR/nginx-tlsup.conf"
  nginx -c "$DIR/nginx-tlsup.conf" -e "$DIR/nginx-tlsup-error.log" >/dev/null 2>&1 & ngxpid=$!; PIDS+=($ngxpid)
  wait_port "$GWH2"; wait_port "$NGXUP"; sleep 0.2
  echo "bench: provider leg over TLS: the simulator behind nginx 'listen ssl http2' (private CA) on :$ORIG;"
  echo "       ${SECS}s per run, wrk -t1 -c$CONNS, 1 KB chat POST, $WORKERS worker(s); conns = connections opened to the provider"
  local D N T H dc nc tc hc
  m=$(conn_max); D=$(run "https://127.0.0.1:$ORIG/deepseek/v1/chat/completions" ""); dc=$(conns_since "$m")
  m=$(conn_max); N=$(run "http://127.0.0.1:$NGXUP/v1/chat/completions" "$ngxpid"); nc=$(conns_since "$m")
  m=$(conn_max); T=$(run "http://127.0.0.1:$GW/v1/chat/completions" "$GWPID"); tc=$(conns_since "$m")
  m=$(conn_max); H=$(run "http://127.0.0.1:$GWH2/v1/chat/completions" "$h2pid"); hc=$(conns_since "$m")
  printf '\n%-30s %10s %9s %9s %12s %8s %7s\n' target req/s p50 p99 "CPU µs/req" "RSS MB" conns
  trow() { read -r a b c d e <<<"$2"; printf '%-30s %10s %9s %9s %12s %8s %7s\n' "$1" "$a" "$b" "$c" "$d" "$e" "$3"; }
  trow "direct (TLS origin, wrk h1)" "$D" "$dc"
  trow "nginx proxy_pass https (h1)" "$N" "$nc"
  trow "tollgate, HTTP/1.1 pool" "$T" "$tc"
  trow "tollgate, http2: true" "$H" "$hc"
  local ncpu tcpu hcpu
  ncpu=$(echo "$N" | awk '{print $4}'); tcpu=$(echo "$T" | awk '{print $4}'); hcpu=$(echo "$H" | awk '{print $4}')
  echo
  echo "TLS upstream, CPU per request vs nginx: HTTP/1.1 pool $tcpu µs vs $ncpu µs ($(awk -v a="$tcpu" -v b="$ncpu" 'BEGIN{printf "%.2f", a/b}')x); http2 $hcpu µs ($(awk -v a="$hcpu" -v b="$ncpu" 'BEGIN{printf "%.2f", a/b}')x)"
  echo "TLS upstream, req/s vs nginx: HTTP/1.1 pool $(awk -v a="$(echo "$T" | awk '{print $1}')" -v b="$(echo "$N" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}'), http2 $(awk -v a="$(echo "$H" | awk '{print $1}')" -v b="$(echo "$N" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}')"
  local tr half pconns PD PN PT PH
  tr=$(echo "$T" | awk '{print $1}')
  half=$(awk -v a="$tr" 'BEGIN{printf "%d", a / 2}')
  pconns=$(( half / 100 > 0 ? half / 100 : 1 ))
  echo
  echo "bench: half of Tollgate's peak, ~$half req/s offered: wrk -c$pconns, each connection pausing a random 10 ms on average"
  m=$(conn_max); PD=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "https://127.0.0.1:$ORIG/deepseek/v1/chat/completions" ""); dc=$(conns_since "$m")
  m=$(conn_max); PN=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "http://127.0.0.1:$NGXUP/v1/chat/completions" "$ngxpid"); nc=$(conns_since "$m")
  m=$(conn_max); PT=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "http://127.0.0.1:$GW/v1/chat/completions" "$GWPID"); tc=$(conns_since "$m")
  m=$(conn_max); PH=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "http://127.0.0.1:$GWH2/v1/chat/completions" "$h2pid"); hc=$(conns_since "$m")
  printf '%-30s %10s %9s %9s %12s %8s %7s\n' target req/s p50 p99 "CPU µs/req" "RSS MB" conns
  trow "direct (TLS origin, wrk h1)" "$PD" "$dc"
  trow "nginx proxy_pass https (h1)" "$PN" "$nc"
  trow "tollgate, HTTP/1.1 pool" "$PT" "$tc"
  trow "tollgate, http2: true" "$PH" "$hc"
  local d50 d99
  d50=$(ms "$(echo "$PD" | awk '{print $2}')"); d99=$(ms "$(echo "$PD" | awk '{print $3}')")
  added() { echo "p50 $(awk -v a="$(ms "$(echo "$1" | awk '{print $2}')")" -v b="$d50" 'BEGIN{printf "%.2f", a-b}') ms, p99 $(awk -v a="$(ms "$(echo "$1" | awk '{print $3}')")" -v b="$d99" 'BEGIN{printf "%.2f", a-b}') ms"; }
  echo
  echo "added at half peak over the TLS origin: nginx $(added "$PN"); tollgate HTTP/1.1 pool $(added "$PT"); tollgate http2 $(added "$PH")"
  for f in "$DIR/gw.log" "$DIR/gw-h2.log"; do
    if grep -q '"level":"error"' "$f"; then echo "bench: $(basename "$f") has errors:"; grep '"level":"error"' "$f" | head -3; fi
  done
}
if [ "$UPSTREAM" = tls ]; then tls_upstream; exit 0; fi

echo "bench: ${SECS}s per run, wrk -t1 -c$CONNS, 1 KB chat POST, $WORKERS worker(s); sim :$SIM"
D=$(run "http://127.0.0.1:$SIM/deepseek/v1/chat/completions" "")
N=""; [ -n "$NGXPID" ] && N=$(run "http://127.0.0.1:$NGX/v1/chat/completions" "$NGXPID")
T=$(run "http://127.0.0.1:$GW/v1/chat/completions" "$GWPID")
# The same request from the cache: one Redis GET, no provider call (the warm-up stores it).
C=$(BENCH_KEY=$CACHE_KEY run "http://127.0.0.1:$GW/v1/chat/completions" "$GWPID")
# The same request through the Responses API (translated to chat and back).
R=$(RUN_SCRIPT=bench/responses.lua run "http://127.0.0.1:$GW/v1/responses" "$GWPID")
# The same chat request over TLS: nginx and Tollgate terminating it.
NT=""; [ -n "$NGXPID" ] && NT=$(run "https://127.0.0.1:$NGXTLS/v1/chat/completions" "$NGXPID")
TT=$(run "https://127.0.0.1:$GWTLS/v1/chat/completions" "$GWPID")

printf '\n%-22s %10s %9s %9s %12s %8s\n' "target" "req/s" "p50" "p99" "CPU µs/req" "RSS MB"
row() { read -r a b c d e <<<"$2"; printf '%-22s %10s %9s %9s %12s %8s\n' "$1" "$a" "$b" "$c" "$d" "$e"; }
row "direct (simulator)" "$D"
[ -n "$N" ] && row "nginx proxy_pass" "$N"
row "tollgate" "$T"
row "tollgate cache hit" "$C"
row "tollgate /v1/responses" "$R"
[ -n "$NT" ] && row "nginx TLS proxy_pass" "$NT"
row "tollgate TLS" "$TT"
tr=$(echo "$T" | awk '{print $1}')
echo
echo "tollgate / direct req/s: $(awk -v a="$tr" -v b="$(echo "$D" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}')"
if [ -n "$N" ]; then
  echo "tollgate / nginx req/s:  $(awk -v a="$tr" -v b="$(echo "$N" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}')"
  echo "CPU per request, tollgate vs nginx: $(echo "$T" | awk '{print $4}') µs vs $(echo "$N" | awk '{print $4}') µs"
  echo "cache hit, tollgate / nginx req/s: $(awk -v a="$(echo "$C" | awk '{print $1}')" -v b="$(echo "$N" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}'); CPU per request: $(echo "$C" | awk '{print $4}') µs vs $(echo "$N" | awk '{print $4}') µs"
fi
if [ -n "$NT" ]; then
  echo "TLS, tollgate / nginx req/s: $(awk -v a="$(echo "$TT" | awk '{print $1}')" -v b="$(echo "$NT" | awk '{print $1}')" 'BEGIN{printf "%.2f", a/b}'); CPU per request: $(echo "$TT" | awk '{print $4}') µs vs $(echo "$NT" | awk '{print $4}') µs"
fi
echo "CPU per request, tollgate TLS vs plain: $(echo "$TT" | awk '{print $4}') µs vs $(echo "$T" | awk '{print $4}') µs"
echo "CPU per request, /v1/responses vs /v1/chat/completions: $(echo "$R" | awk '{print $4}') µs vs $(echo "$T" | awk '{print $4}') µs ($(awk -v a="$(echo "$R" | awk '{print $4}')" -v b="$(echo "$T" | awk '{print $4}')" 'BEGIN{printf "%.2f", a/b}')x)"

# Latency at half of Tollgate's peak rate: connections that each wait a random 10 ms (mean)
# between requests (bench/paced.lua), the same offered load straight to the
# simulator and through Tollgate; the goal compares the two p99s.
half=$(awk -v a="$tr" 'BEGIN{printf "%d", a / 2}')
pconns=$(( half / 100 > 0 ? half / 100 : 1 ))
echo
echo "bench: half of Tollgate's peak, ~$half req/s offered: wrk -c$pconns, each connection pausing a random 10 ms on average between requests"
PD=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "http://127.0.0.1:$SIM/deepseek/v1/chat/completions" "")
PT=$(RUN_CONNS=$pconns RUN_SCRIPT=bench/paced.lua run "http://127.0.0.1:$GW/v1/chat/completions" "$GWPID")
printf '%-22s %10s %9s %9s %12s %8s\n' "target" "req/s" "p50" "p99" "CPU µs/req" "RSS MB"
row "direct (simulator)" "$PD"
row "tollgate" "$PT"
ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) printf "%.3f", (v+0) / 1000; else if (v ~ /ms$/) printf "%.3f", v+0; else printf "%.3f", (v+0) * 1000 }'; }
dp=$(echo "$PD" | awk '{print $3}'); tp=$(echo "$PT" | awk '{print $3}')
echo
echo "tollgate added p99 at half peak: $(awk -v a="$(ms "$tp")" -v b="$(ms "$dp")" 'BEGIN{printf "%.2f", a-b}') ms"
[ "$MODE" = all ] && streams
if grep -q '"level":"error"' "$DIR/gw.log"; then echo "bench: the gateway logged errors:"; grep '"level":"error"' "$DIR/gw.log" | head -5; fi
