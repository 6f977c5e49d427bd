#!/usr/bin/env bash
# deps.sh — checks (and, as root, installs) the Debian packages Tollgate needs,
# by purpose, so `make run` does not pull in a browser:
#   build  the C libraries (through pkg-config), http_parser and jsmn headers, cc
#   run    build + redis-server (make run starts a private Redis)
#   test   run + node/npm, curl, openssl, clang with libFuzzer (fuzz targets), chromium
#          (the dashboard test drives headless Chromium), nginx-light
#          (tests/e2e/h2.test.mjs: a provider behind TLS and HTTP/2)
#   bench  run + nginx-light (the proxy_pass baseline), wrk and openssl
#   tools/deps.sh --check [GROUP...]  exit 0 when everything is present, else 1 (silent)
#   tools/deps.sh [GROUP...]          install what is missing (root), or print the apt-get line
# With no GROUP: test.
set -euo pipefail
check=0
groups=()
for a in "$@"; do
    case "$a" in
        --check) check=1 ;;
        build | run | test | bench) groups+=("$a") ;;
        *) echo "deps.sh: unknown argument '$a'" >&2; exit 2 ;;
    esac
done
[ ${#groups[@]} -gt 0 ] || groups=(test)
want() { local g; for g in "${groups[@]}"; do case "$g:$1" in "$1:$1" | test:run | bench:run | run:build | test:build | bench:build) return 0 ;; esac; done; return 1; }

# pkg-config module -> Debian package
declare -A PC=(
    [libevent]=libevent-dev [libevent_pthreads]=libevent-dev [libevent_openssl]=libevent-dev [libcurl]=libcurl4-openssl-dev
    [jansson]=libjansson-dev [openssl]=libssl-dev [hiredis]=libhiredis-dev
    [yaml-0.1]=libyaml-dev [cmocka]=libcmocka-dev [libnghttp2]=libnghttp2-dev
)
# header -> Debian package (neither ships a .pc file on Debian 12)
declare -A HDR=([/usr/include/http_parser.h]=libhttp-parser-dev [/usr/include/jsmn.h]=libjsmn-dev)
# command -> Debian package
declare -A CMD=([cc]=build-essential [make]=build-essential [pkg-config]=pkg-config)
want run && CMD+=([redis-server]=redis-server [redis-cli]=redis-server [curl]=curl)
want test && CMD+=([node]=nodejs [npm]=npm [clang]=clang [chromium]=chromium [nginx]=nginx-light [openssl]=openssl)
want bench && CMD+=([nginx]=nginx-light [wrk]=wrk)
# The TLS tests and the bench's TLS row make their certificates with it.
{ want test || want bench; } && CMD+=([openssl]=openssl)

missing=()
add() { case " ${missing[*]-} " in *" $1 "*) ;; *) missing+=("$1") ;; esac; }

for c in "${!CMD[@]}"; do command -v "$c" >/dev/null 2>&1 || add "${CMD[$c]}"; done
if command -v pkg-config >/dev/null 2>&1; then
    for m in "${!PC[@]}"; do pkg-config --exists "$m" 2>/dev/null || add "${PC[$m]}"; done
else
    for m in "${!PC[@]}"; do add "${PC[$m]}"; done
fi
for h in "${!HDR[@]}"; do [ -f "$h" ] || add "${HDR[$h]}"; done
# libFuzzer's runtime comes with clang's compiler-rt package.
if want test && ! compgen -G '/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a' >/dev/null; then
    add libclang-rt-14-dev
fi

[ ${#missing[@]} -eq 0 ] && exit 0
[ $check -eq 1 ] && exit 1

# Sorted so the printed line is the same on every run.
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort)
if [ "$EUID" -ne 0 ]; then
    echo "tollgate: missing packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "tollgate: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The e2e suite uses node:test with --test-concurrency (node >= 18.19); say so rather than fail obscurely.
if command -v node >/dev/null 2>&1; then
    node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>18||(a==18&&b>=19)?0:1)' ||
        echo "tollgate: warning: node $(node -v) is too old for the e2e tests (need >= 18.19)" >&2
fi
