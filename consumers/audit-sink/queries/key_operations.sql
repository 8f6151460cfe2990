-- Question: who changed which key, when, and who approved it? Every key operation event
-- (`vigil keys`: registrations, updates, rotations, revocations, adoptions, plan approvals),
-- newest first, with the administrator who signed it, the plan's planner and approver, and the
-- verifier's verdict (anything but `valid` is an attempt by someone who is not an
-- administrator). Parameter: {days:UInt32}, how far back.
SELECT
    occurred_at,
    activity,
    attributes['key_id'] AS key_id,
    toUInt64OrZero(attributes['version']) AS version,
    attributes['state'] AS key_state,
    audit_events.key_id AS signed_by,
    attributes['planner_key_id'] AS planned_by,
    attributes['approver_key_id'] AS approved_by,
    attributes['plan_id'] AS plan_id,
    attributes['emergency'] = 'true' AS emergency,
    attributes['reason'] AS reason,
    state
FROM audit_events
WHERE class = 'key_lifecycle'
  AND occurred_at >= now64(6) - toIntervalDay({days:UInt32})
ORDER BY occurred_at DESC, activity
