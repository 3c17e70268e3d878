--[[
  failed_page: ids and failedReasons of a page of the failed set, oldest first, in one call.

  Bulk quarantine matches failedReason against a user's regex, which Lua cannot do; this
  hands the client one bounded page at a time (BullMQ's getJobs would cost a round trip per
  job to read the reasons).

  KEYS[1]  '<prefix>:<queue>:failed'
  ARGV[1]  key base '<prefix>:<queue>:'
  ARGV[2]  start index (0 = oldest)
  ARGV[3]  page size

  Returns a flat list: id1, reason1, id2, reason2, ... ("" for a job with no reason).
]]
local rcall = redis.call
local start = tonumber(ARGV[2])
local ids = rcall("ZRANGE", KEYS[1], start, start + tonumber(ARGV[3]) - 1)
local out = {}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = rcall("HGET", ARGV[1] .. id, "failedReason") or ""
end
return out
