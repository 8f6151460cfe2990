-- Question: which keys still in use (last 24 h) are older than the rotation policy and were
-- never rotated or revoked? A key's age runs from its key_registered event, else from the first
-- event that names it. Key operation events name their key in attributes['key_id'] (their own
-- key_id is the administrator who signed them). Parameter: {max_age_days:UInt32}, the policy.
SELECT
    if(class = 'key_lifecycle' AND attributes['key_id'] != '', attributes['key_id'], key_id)
        AS key,
    if(countIf(class = 'key_lifecycle' AND activity = 'key_registered') > 0,
       minIf(occurred_at, class = 'key_lifecycle' AND activity = 'key_registered'),
       min(occurred_at)) AS created_at,
    maxIf(occurred_at, class != 'key_lifecycle') AS last_used,
    dateDiff('day', created_at, now64(6)) AS age_days
FROM audit_events
WHERE key != '' AND (class != 'key_lifecycle' OR attributes['key_id'] != '')
GROUP BY key
HAVING countIf(class = 'key_lifecycle'
               AND activity IN ('rotation_started', 'rotation_completed', 'key_revoked')) = 0
   AND last_used >= now64(6) - INTERVAL 24 HOUR
   AND created_at < now64(6) - toIntervalDay({max_age_days:UInt32})
ORDER BY age_days DESC, key
