-- Question: which signing keys had failed verifications in the last 24 hours, and how many?
-- "Failed" means the verifier's verdict was not valid (bad, revoked, untrusted, unknown) or the
-- producer itself reported a failed signature check.
SELECT
    key_id,
    count() AS failures,
    countIf(state = 'bad') AS bad,
    countIf(state = 'revoked') AS revoked,
    countIf(state = 'untrusted') AS untrusted,
    min(occurred_at) AS first_seen,
    max(occurred_at) AS last_seen
FROM audit_events
WHERE occurred_at >= now64(6) - INTERVAL 24 HOUR
  AND (state != 'valid' OR (class = 'signature_verification' AND status = 'failure'))
GROUP BY key_id
ORDER BY failures DESC, key_id
