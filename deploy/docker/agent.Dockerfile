# driftwatch-agent: multi-stage build, small runtime image. The image runs
# as a non-root user; reading a host's protected files (shadow, sudoers,
# audit logs) through /host needs the deployment to grant it (compose:
# `user: "0"` with the host mounted read-only; Kubernetes: the DaemonSet's
# securityContext).
#   docker build -f deploy/docker/agent.Dockerfile -t driftwatch/agent:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The shipping profile: opt-level s with LTO (see Cargo.toml, BENCHMARKS.md).
RUN cargo build --profile agent --locked -p driftwatch-agent

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/driftwatch-agent --create-home driftwatch
COPY --from=build /src/target/agent/driftwatch-agent /usr/local/bin/driftwatch-agent
ENV DRIFTWATCH_LOG_FORMAT=json
USER 10001
WORKDIR /var/lib/driftwatch-agent
ENTRYPOINT ["driftwatch-agent"]
CMD ["run", "--config", "/etc/driftwatch/agent.yaml"]
