--[[
  claim_incident: the one incident of an alert group, decided atomically.

  Alertmanager re-sends a group again and again, several replicas may receive it, and the
  bot may restart mid-way: whoever runs this first for a group with no open incident
  creates it; everyone else gets the same incident id back. A group whose incident was
  resolved gets a new incident when it fires again.

  KEYS[1]  '<state>:group:<gid>'      the group's current incident id
  KEYS[2]  '<state>:groupseq:<gid>'   incident counter of the group
  ARGV[1]  '<state>:incident:'        incident hash key base
  ARGV[2]  gid
  ARGV[3]  now (ms)
  ARGV[4]  the alert event (JSON)
  ARGV[5]  "1" to create when there is none, "0" to only look

  Returns { incident id or "", created (1/0) }
]]
local current = redis.call("GET", KEYS[1])
if current then
  local status = redis.call("HGET", ARGV[1] .. current, "status")
  if status and status ~= "resolved" then
    return { current, 0 }
  end
end
if ARGV[5] ~= "1" then
  return { "", 0 }
end
local iid = ARGV[2] .. "-" .. redis.call("INCR", KEYS[2])
redis.call("HSET", ARGV[1] .. iid, "status", "open", "opened_at", ARGV[3], "event", ARGV[4],
  "notifications", 1, "last_notified_at", ARGV[3])
redis.call("SET", KEYS[1], iid)
return { iid, 1 }
