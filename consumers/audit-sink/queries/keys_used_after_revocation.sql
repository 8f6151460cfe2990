-- Question: which keys were used to sign events after they were revoked, and by whom?
-- A key's revocation time is its earliest verified key_revoked event (`vigil keys revoke`,
-- which names the key in attributes['key_id']); any other event naming the key later than that
-- is a use after revocation (whatever the verifier's verdict was).
WITH revocations AS
(
    SELECT attributes['key_id'] AS key_id, min(occurred_at) AS revoked_at
    FROM audit_events
    WHERE class = 'key_lifecycle' AND activity = 'key_revoked' AND state = 'valid'
      AND attributes['key_id'] != ''
    GROUP BY key_id
)
SELECT
    e.key_id AS key_id,
    any(r.revoked_at) AS revoked_at,
    count() AS uses_after_revocation,
    min(e.occurred_at) AS first_use_after,
    max(e.occurred_at) AS last_use_after,
    groupUniqArray(e.platform) AS platforms,
    groupUniqArray(e.service) AS services
FROM audit_events AS e
INNER JOIN revocations AS r ON e.key_id = r.key_id
WHERE e.occurred_at > r.revoked_at AND e.class != 'key_lifecycle'
GROUP BY e.key_id
ORDER BY uses_after_revocation DESC, key_id
