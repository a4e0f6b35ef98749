-- Every waiver, latest version each (revoked ones included: their history
-- counts for posture at a past instant and for reports).
SELECT
    waiver_id,
    argMax(control_id, version) AS control_id,
    argMax(requirement, version) AS requirement,
    argMax(scope, version) AS scope,
    argMax(justification, version) AS justification,
    argMax(approver, version) AS approver,
    argMax(risk, version) AS risk,
    argMax(ticket, version) AS ticket,
    argMax(starts_at, version) AS starts_at,
    argMax(expires_at, version) AS expires_at,
    argMax(revoked_at, version) AS revoked_at,
    argMax(revoked_by, version) AS revoked_by,
    argMax(created_by, version) AS created_by,
    argMax(source, version) AS source,
    argMax(updated_at, version) AS last_updated,
    max(version) AS last_version
FROM waivers
GROUP BY waiver_id
ORDER BY waiver_id
