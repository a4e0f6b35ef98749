-- The latest drift events, newest first: of one asset, or of all when the
-- asset is ''. Parameters: asset, asset, limit.
-- test-params: '', '', 50
SELECT drift_id, asset_id, control_id, title, severity, direction, from_status, to_status, at, frameworks, before, after, changed,
       cause_event_id, cause_source, cause_action, cause_user, cause_object, cause_at, cause_matched, snapshot_id, sequence, batch_id
FROM drift_events FINAL
WHERE ? = '' OR asset_id = ?
ORDER BY at DESC, drift_id
LIMIT ?
