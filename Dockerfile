# Ferry in one image: ferry-broker, ferry-engine, ferry-worker, the ferry
# client and the example scripts (in /examples). The service to run is the
# command: `docker run ferry ferry-broker`, or see docker-compose.yml.
#
# The package lists follow the Makefile's PACKAGES (build) and what the
# binaries link (runtime; ca-certificates for the http worker function).
#
# Three stages: "deps" (debian:bookworm with the -dev packages), "build"
# (compiles the four binaries with CMake), "runtime" (debian:bookworm-slim
# with only the runtime libraries, running as the unprivileged user ferry).
# For the layer cache, the apt layers come first and the compile sees only
# the source files: editing examples or docs does not recompile.
#
# Without access to an image registry, docker/base-images.sh builds the two
# base images locally first.

FROM debian:bookworm AS deps
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libzmq3-dev liblua5.4-dev libprotobuf-c-dev \
      protobuf-c-compiler libcmocka-dev uthash-dev libcurl4-openssl-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*

# The build context less what is not compiled: tests/CMakeLists.txt finds no
# test sources and adds no tests. A later COPY --from=sources is cached on
# the content of these files only.
FROM deps AS sources
COPY . /src
RUN cd /src && rm -rf examples docs docker tests/unit tests/integration bench scripts

FROM deps AS build
COPY --from=sources /src /src
WORKDIR /src
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target ferry-broker ferry-engine ferry-worker ferry \
 && strip /build/bin/ferry-broker /build/bin/ferry-engine /build/bin/ferry-worker /build/bin/ferry

FROM debian:bookworm-slim AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libzmq5 liblua5.4-0 libprotobuf-c1 libcurl4 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 ferry \
 && useradd --uid 10001 --gid ferry --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin ferry
COPY --from=build /build/bin/ferry-broker /build/bin/ferry-engine /build/bin/ferry-worker \
     /build/bin/ferry /usr/local/bin/
COPY docker/healthcheck.sh /usr/local/bin/ferry-healthcheck
COPY docker/keys.sh /usr/local/bin/ferry-keys
# The keys volume of docker-compose.yml: a new named volume takes this
# folder's owner, so the image's user can write the keys there.
RUN mkdir /keys && chown ferry:ferry /keys
COPY examples /examples
USER ferry
WORKDIR /examples
EXPOSE 5555 5556 5557 5558 9464
# The binaries stop cleanly on SIGTERM (what `docker stop` sends) and run as
# PID 1: no shell in between.
CMD ["ferry", "--help"]
