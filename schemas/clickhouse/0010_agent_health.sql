-- Probe results gain the TLS certificate's days to expiry, and heartbeats
-- the agent's own delivery health (its spool and what it dropped), so that
-- a stuck or lossy agent is seen on the fleet dashboard.
ALTER TABLE sla_measurements ADD COLUMN cert_days_left Nullable(Int32), ADD COLUMN spool_depth Nullable(Int64), ADD COLUMN spool_bytes Nullable(Int64), ADD COLUMN agent_dropped Nullable(Int64), ADD COLUMN last_sent Nullable(DateTime);
