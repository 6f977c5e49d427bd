#!/usr/bin/env bash
# check-includes.sh — keeps the floors of the source tree pointing one way.
# Reads every `#include "..."` in core/ providers/ policy/ gateway/ sim/
# (.c and .h) and fails, naming the files, when
#   (a) includes form a cycle between modules (a module is a .c file and
#       its .h: gateway/request.c including gateway/server.h while
#       gateway/server.c includes gateway/request.h is a cycle; a private
#       header foo_int.h belongs to module foo), or
#   (b) an include points up a floor or across a wall:
#         core       0  includes core/ only
#         providers  1  core/ and providers/ (never policy/)
#         policy     1  core/ and policy/ (never providers/)
#         gateway    2  everything below; sim/ only from gateway/main.c
#                       and gateway/server.c
#         sim        2  core/, sim/ and gateway/http1.h only
# Prints one line of summary when all holds. Exit status 0 ok, 1 violation.
# Run from anywhere: `tools/check-includes.sh` (make check-includes).
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=(core providers policy gateway sim)
mapfile -t files < <(find "${dirs[@]}" -type f \( -name '*.c' -o -name '*.h' \) | LC_ALL=C sort)
if [ "${#files[@]}" -eq 0 ]; then
    echo "check-includes: no sources found under ${dirs[*]}" >&2
    exit 1
fi

# One line per include: "FILE TARGET". Files without any print nothing.
for f in "${files[@]}"; do
    sed -n 's|^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*|\1|p' "$f" | sed "s|^|$f |"
done | awk -v nfiles="${#files[@]}" '
function floor_of(d) {
    if (d == "core") return 0
    if (d == "providers" || d == "policy") return 1
    if (d == "gateway" || d == "sim") return 2
    return -1
}
function dir_of(p) { return substr(p, 1, index(p, "/") - 1) }
function module_of(p) { sub(/\.[ch]$/, "", p); sub(/_int$/, "", p); return p }
function bad(msg) { print "check-includes: " msg > "/dev/stderr"; nbad++ }

# Depth-first search over modules; an edge back to a module on the current
# path closes a cycle, reported once with the include behind each step.
function dfs(u,    i, v, k, msg) {
    color[u] = 1
    path[++depth] = u
    for (i = 1; i <= nadj[u]; i++) {
        v = adj[u, i]
        if (color[v] == 1) {
            msg = ""
            for (k = depth; k >= 1 && path[k] != v; k--) {}
            for (; k <= depth; k++)
                msg = msg (msg == "" ? "" : "; ") why[path[k], (k < depth ? path[k + 1] : v)]
            bad("include cycle: " msg)
        } else if (color[v] == 0) {
            dfs(v)
        }
    }
    depth--
    color[u] = 2
}

{
    f = $1; t = $2; nedges++
    fd = dir_of(f); td = dir_of(t)
    ff = floor_of(fd); tf = floor_of(td)
    if (tf < 0) {
        bad(f " includes \"" t "\": not under core/ providers/ policy/ gateway/ sim/")
    } else if (tf > ff) {
        bad(f " (floor " ff ", " fd "/) includes " t " (floor " tf ", " td "/): includes point down, never up")
    } else if (fd == "providers" && td == "policy" || fd == "policy" && td == "providers") {
        bad(f " includes " t ": providers/ and policy/ share a floor and do not include each other")
    } else if (fd == "sim" && td != "core" && td != "sim" && t != "gateway/http1.h") {
        bad(f " includes " t ": sim/ includes only core/, sim/ and gateway/http1.h")
    } else if (td == "sim" && fd != "sim" && f != "gateway/main.c" && f != "gateway/server.c") {
        bad(f " includes " t ": only gateway/main.c and gateway/server.c include sim/")
    }
    u = module_of(f); v = module_of(t)
    if (u != v && !((u, v) in why)) {
        why[u, v] = f " includes " t
        adj[u, ++nadj[u]] = v
        node[u] = 1; node[v] = 1
    }
}

END {
    for (u in node) nmod++
    for (u in node) if (color[u] == 0) dfs(u)
    if (nbad) {
        print "check-includes: " nbad " problem" (nbad == 1 ? "" : "s") " (floors are listed at the top of tools/check-includes.sh)" > "/dev/stderr"
        exit 1
    }
    printf "check-includes: ok, %d files, %d includes, %d modules, no cycle, every include points down\n", nfiles, nedges, nmod
}'
