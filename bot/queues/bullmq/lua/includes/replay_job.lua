--[[
  replay_job: what replay.lua and replay_one.lua share, spliced into each where it says
  `--- @include "replay_job"` (bot/queues/bullmq/scripts.py; npm bullmq shares its own
  Lua the same way). Redis runs each script as one whole, so the job is written into its
  queue and its DLQ copy removed in one step: a crash leaves it wholly in one or the other.

  The including script has set `rcall`, `srcBase`, `dlqBase` and `now` (ARGV[1..3]) and
  passes its KEYS as replay.lua lists them (1 dlq failed, 2 dlq meta, 3 dlq events, 4 wait,
  5 paused, 6 meta, 7 active, 8 prioritized, 9 marker, 10 pc, 11 events); ARGV[6] is the
  option keys to drop, comma separated.
]]
local dropped = {}
for key in string.gmatch(ARGV[6], "[^,]+") do
  dropped[key] = true
end

-- getOrSetMaxEvents
local function maxEvents(metaKey)
  local value = rcall("HGET", metaKey, "opts.maxLenEvents")
  if not value then
    value = 10000
    rcall("HSET", metaKey, "opts.maxLenEvents", value)
  end
  return value
end

-- opts without the dropped keys, and the parsed table (for priority and lifo).
local function replayOpts(raw)
  local ok, opts = pcall(cjson.decode, raw or "{}")
  if not ok or type(opts) ~= "table" then
    return raw or "{}", {}
  end
  local changed = false
  for key in pairs(dropped) do
    if opts[key] ~= nil then
      opts[key] = nil
      changed = true
    end
  end
  if changed then
    return cjson.encode(opts), opts
  end
  return raw, opts
end

-- getTargetQueueList / isQueuePausedOrMaxed: (paused, paused or at global concurrency).
local function queueState()
  local meta = rcall("HMGET", KEYS[6], "paused", "concurrency")
  local paused = meta[1] ~= false
  local pausedOrMaxed = paused
  if not paused and meta[2] then
    pausedOrMaxed = rcall("LLEN", KEYS[7]) >= tonumber(meta[2])
  end
  return paused, pausedOrMaxed
end

-- The job `id` back in its queue with `data`, laid out as npm bullmq 5's addStandardJob /
-- addPrioritizedJob lay out a new job with a custom id (storeJob, addJobInTargetList,
-- addJobWithPriority, getPriorityScore; "added" and "waiting" events), its logs and a
-- `qo.originalData` (the data before an earlier edited replay) moved back with it, and the
-- DLQ copy removed. `copy` is the DLQ hash's name, data, opts, qo.originalData. The marker
-- is the caller's (replay.lua sets it once per call). Returns the job's key.
local function putBack(id, copy, data, paused, srcMaxEvents, dlqMaxEvents)
  local srcKey = srcBase .. id
  local dlqKey = dlqBase .. id
  local optsJson, opts = replayOpts(copy[3])
  local priority = tonumber(opts["priority"]) or 0
  rcall("HSET", srcKey, "name", copy[1], "data", data, "opts", optsJson,
    "timestamp", now, "delay", 0, "priority", priority)
  if copy[4] then
    rcall("HSET", srcKey, "qo.originalData", copy[4])
  end
  rcall("XADD", KEYS[11], "MAXLEN", "~", srcMaxEvents, "*", "event", "added",
    "jobId", id, "name", copy[1])
  if rcall("EXISTS", dlqKey .. ":logs") == 1 then
    rcall("DEL", srcKey .. ":logs")
    rcall("RENAME", dlqKey .. ":logs", srcKey .. ":logs")
  end
  if priority > 0 then
    local counter = rcall("INCR", KEYS[10])
    rcall("ZADD", KEYS[8], priority * 0x100000000 + counter % 0x100000000, id)
  else
    local target = paused and KEYS[5] or KEYS[4]
    rcall(opts["lifo"] == true and "RPUSH" or "LPUSH", target, id)
  end
  rcall("XADD", KEYS[11], "MAXLEN", "~", srcMaxEvents, "*", "event", "waiting", "jobId", id)
  rcall("ZREM", KEYS[1], id)
  rcall("DEL", dlqKey, dlqKey .. ":dependencies", dlqKey .. ":processed", dlqKey .. ":failed",
    dlqKey .. ":unsuccessful")
  rcall("XADD", KEYS[3], "MAXLEN", "~", dlqMaxEvents, "*", "event", "removed",
    "jobId", id, "prev", "failed")
  return srcKey
end
