//! Collector configuration (see `deploy/local/collector.yaml` for an example).
