-- Question: how many events did each platform produce per hour over the last {hours:UInt32}
-- hours, and how many of them were rejected?
SELECT
    toStartOfHour(occurred_at) AS hour,
    platform,
    count() AS events,
    countIf(state != 'valid') AS rejected
FROM audit_events
WHERE occurred_at >= now64(6) - toIntervalHour({hours:UInt32})
GROUP BY hour, platform
ORDER BY hour, platform
