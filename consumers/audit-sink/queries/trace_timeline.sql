-- Question: what happened in one trace, across every platform (Rust, Python, JS, CLI), in order?
-- Parameter: {trace_id:String}, 32 lowercase hex characters.
SELECT
    occurred_at,
    platform,
    service,
    span_id,
    class,
    activity,
    status,
    state,
    event_id
FROM audit_events
WHERE trace_id = {trace_id:String}
ORDER BY occurred_at, kafka_partition, kafka_offset
