# Tollgate container: a build stage with the -dev packages, and a slim runtime
# with only the shared libraries, a non-root user and the default config in
# /etc/tollgate (mount your own over it). A provider whose key is not set is
# unusable (503 naming the variable); to try it offline, let the built-in
# simulator answer for them: append `tollgate serve --demo -c
# /etc/tollgate/tollgate.yaml` to `docker run`. With no Redis reachable the
# gateway still serves and journals usage under /var/lib/tollgate until Redis
# answers.
#
#   docker build -t tollgate .
#   docker run -p 8080:8080 -e DEEPSEEK_API_KEY=... -v $PWD/config:/etc/tollgate:ro tollgate
#
# TLS: the image ships no certificate or key. Mount them and name them in a
# `listen:` entry of your config, relative to it (docs/operations.md, TLS):
#   listen: [0.0.0.0:8080, { address: 0.0.0.0:8443, tls: { cert: certs/gateway.pem, key: certs/gateway.key } }]
#   docker run -p 8443:8443 -v $PWD/config:/etc/tollgate:ro -v $PWD/certs:/etc/tollgate/certs:ro tollgate
# The key must be readable by uid 10001 (the tollgate user). Rotate by
# replacing the files, then `docker kill -s HUP` (the file watcher also sees
# files rewritten or renamed over in place).

FROM debian:bookworm AS build
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        build-essential pkg-config libevent-dev libcurl4-openssl-dev libjansson-dev libssl-dev \
        libhiredis-dev libyaml-dev libhttp-parser-dev libjsmn-dev libnghttp2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# `make tollgate` builds the binary only: the test tools (node, redis) are not needed here.
RUN make -j"$(nproc)" tollgate && strip tollgate && ./tollgate --version

FROM debian:bookworm-slim
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        libevent-2.1-7 libevent-pthreads-2.1-7 libevent-openssl-2.1-7 libcurl4 libjansson4 libssl3 \
        libhiredis0.14 libnghttp2-14 \
        libyaml-0-2 libhttp-parser2.9 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-log-init --home-dir /var/lib/tollgate --create-home --shell /usr/sbin/nologin tollgate \
 && install -d -o tollgate -g tollgate /var/lib/tollgate/var
COPY --from=build /src/tollgate /usr/local/bin/tollgate
COPY config/ /etc/tollgate/
# The usage journal (var/tollgate-journal.N) is written relative to the working directory.
WORKDIR /var/lib/tollgate
USER tollgate
# 8443: the conventional TLS port, served only when the config has a TLS listener there.
EXPOSE 8080 8443
# bash's /dev/tcp keeps curl out of the image: one GET /healthz, healthy on a 200 status line.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && head -c 12 <&3 | grep -q ' 200$'"]
STOPSIGNAL SIGTERM
CMD ["tollgate", "serve", "-c", "/etc/tollgate/tollgate.yaml"]
