-- Question: which keys still in use (last 24 h) are older than the rotation policy and were
-- never rotated or revoked? A key's age runs from its key_lifecycle/create event, else from the
-- first event that names it. Parameter: {max_age_days:UInt32}, the rotation policy.
SELECT
    key_id,
    if(countIf(class = 'key_lifecycle' AND activity = 'create') > 0,
       minIf(occurred_at, class = 'key_lifecycle' AND activity = 'create'),
       min(occurred_at)) AS created_at,
    max(occurred_at) AS last_used,
    dateDiff('day', created_at, now64(6)) AS age_days
FROM audit_events
WHERE key_id != ''
GROUP BY key_id
HAVING countIf(class = 'key_lifecycle' AND activity IN ('rotate', 'revoke')) = 0
   AND last_used >= now64(6) - INTERVAL 24 HOUR
   AND created_at < now64(6) - toIntervalDay({max_age_days:UInt32})
ORDER BY age_days DESC, key_id
