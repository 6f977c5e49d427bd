#!/usr/bin/env bash
# deps.sh — checks (and, as root, installs) the Debian packages Tollgate needs to
# build and test: the C libraries (through pkg-config), two header-only or
# pkg-config-less libraries (http_parser, jsmn), and the tools the tests drive.
#   tools/deps.sh --check   exit 0 when everything is present, else 1 (silent)
#   tools/deps.sh           install what is missing (root), or print the apt-get line
set -euo pipefail

# pkg-config module -> Debian package
declare -A PC=(
    [libevent]=libevent-dev [libevent_pthreads]=libevent-dev [libcurl]=libcurl4-openssl-dev
    [jansson]=libjansson-dev [openssl]=libssl-dev [hiredis]=libhiredis-dev
    [yaml-0.1]=libyaml-dev [cmocka]=libcmocka-dev
)
# header -> Debian package (neither ships a .pc file on Debian 12)
declare -A HDR=([/usr/include/http_parser.h]=libhttp-parser-dev [/usr/include/jsmn.h]=libjsmn-dev)
# command -> Debian package
declare -A CMD=(
    [cc]=build-essential [make]=build-essential [pkg-config]=pkg-config [redis-server]=redis-server
    [redis-cli]=redis-server [node]=nodejs [npm]=npm [curl]=curl
)

missing=()
add() { case " ${missing[*]-} " in *" $1 "*) ;; *) missing+=("$1") ;; esac; }

for c in "${!CMD[@]}"; do command -v "$c" >/dev/null 2>&1 || add "${CMD[$c]}"; done
if command -v pkg-config >/dev/null 2>&1; then
    for m in "${!PC[@]}"; do pkg-config --exists "$m" 2>/dev/null || add "${PC[$m]}"; done
else
    for m in "${!PC[@]}"; do add "${PC[$m]}"; done
fi
for h in "${!HDR[@]}"; do [ -f "$h" ] || add "${HDR[$h]}"; done

[ ${#missing[@]} -eq 0 ] && exit 0
[ "${1:-}" = "--check" ] && exit 1

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
