-- Question: which client IPs caused failed verifications in the last 24 hours, and how many?
-- Same definition of "failed" as failed_verifications_by_key_24h.sql.
SELECT
    client_ip,
    count() AS failures,
    uniqExact(key_id) AS distinct_keys,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen
FROM audit_events
WHERE occurred_at >= now64(6) - INTERVAL 24 HOUR
  AND (state != 'valid' OR (class = 'signature_verification' AND status = 'failure'))
GROUP BY client_ip
ORDER BY failures DESC, client_ip
