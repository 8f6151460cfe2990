-- Question: which producers (platform, service, host) emitted the most rejected events in the
-- last 24 hours? Parameter: {limit:UInt32}.
SELECT
    platform,
    service,
    host,
    count() AS rejected,
    groupUniqArray(state) AS states
FROM audit_events
WHERE occurred_at >= now64(6) - INTERVAL 24 HOUR
  AND state != 'valid'
GROUP BY platform, service, host
ORDER BY rejected DESC, platform, service, host
LIMIT {limit:UInt32}
