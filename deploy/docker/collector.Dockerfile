# driftwatch-collector: multi-stage build, small non-root runtime image.
#   docker build -f deploy/docker/collector.Dockerfile -t driftwatch/collector:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p driftwatch-collector

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/driftwatch --create-home driftwatch
COPY --from=build /src/target/release/driftwatch-collector /usr/local/bin/driftwatch-collector
COPY policies /etc/driftwatch/policies
ENV DRIFTWATCH_COLLECTOR__POLICIES=/etc/driftwatch/policies \
    DRIFTWATCH_LOG_FORMAT=json
USER 10001
WORKDIR /var/lib/driftwatch
ENTRYPOINT ["driftwatch-collector"]
CMD ["run", "--config", "/etc/driftwatch/collector.yaml"]
