--[[
  quarantine: move jobs from a queue into its DLQ, each job atomically.

  Why a script of our own: BullMQ has no public way to fail a job that is not active
  (moveToFailed needs the worker's lock token), and a remove-then-add sequence from the
  client would have a moment where the job is in neither queue. Inside one script Redis
  runs everything or nothing, so a crash leaves each job wholly in the source or wholly in
  the DLQ. A bulk move calls this once per small batch of ids, so no call blocks for long.

  The DLQ copy keeps every field of the job hash (id, name, data, opts, atm, failedReason,
  stacktrace, timestamps, ...) and its logs and flow keys, and is placed in the DLQ's
  `failed` set, with failedReason "quarantined: <reason> (by <actor>)" so Bull Board and
  npm bullmq show it for what it is. The original failedReason and finishedOn are kept
  under qo.failedReason / qo.finishedOn, with qo.by, qo.at, qo.reason, qo.from, qo.queue.

  KEYS[1]  source wait            KEYS[7]  source completed
  KEYS[2]  source paused          KEYS[8]  source waiting-children
  KEYS[3]  source active          KEYS[9]  source meta
  KEYS[4]  source delayed         KEYS[10] source events
  KEYS[5]  source prioritized     KEYS[11] dlq failed
  KEYS[6]  source failed          KEYS[12] dlq meta
                                  KEYS[13] dlq events
  ARGV[1]  source key base '<prefix>:<queue>:'
  ARGV[2]  dlq key base '<prefix>:<queue>-dlq:'
  ARGV[3]  now (ms)
  ARGV[4]  operator's reason
  ARGV[5]  actor
  ARGV[6]  source queue name
  ARGV[7]  states that may be moved, comma separated (e.g. "failed" for a bulk move)
  ARGV[8..] job ids

  Returns one string per id: "moved:<state>", "missing", "dlq-has:<id>", "active",
  "flow:<parentKey>", or "state:<state>" (a state that may not be moved).
]]
local rcall = redis.call
local srcBase, dlqBase = ARGV[1], ARGV[2]
local now, reason, actor, queueName = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local movable = {}
for state in string.gmatch(ARGV[7], "[^,]+") do
  movable[state] = true
end

local srcPaused = rcall("HEXISTS", KEYS[9], "paused") == 1

local function maxEvents(metaKey)
  return tonumber(rcall("HGET", metaKey, "opts.maxLenEvents")) or 10000
end

-- The state a job is in and how to take it out of there; mirrors getStateV2-8.lua.
local function locate(id)
  if rcall("ZSCORE", KEYS[6], id) then return "failed", "zset", KEYS[6] end
  if rcall("ZSCORE", KEYS[4], id) then return "delayed", "zset", KEYS[4] end
  if rcall("ZSCORE", KEYS[5], id) then return "prioritized", "zset", KEYS[5] end
  if rcall("ZSCORE", KEYS[7], id) then return "completed", nil, nil end
  if rcall("LPOS", KEYS[3], id) then return "active", nil, nil end
  if rcall("LPOS", KEYS[1], id) then
    if srcPaused then return "paused", "list", KEYS[1] end
    return "waiting", "list", KEYS[1]
  end
  if rcall("LPOS", KEYS[2], id) then return "paused", "list", KEYS[2] end
  if rcall("ZSCORE", KEYS[8], id) then return "waiting-children", nil, nil end
  return "unknown", nil, nil
end

local SUBKEYS = { ":logs", ":dependencies", ":processed", ":failed", ":unsuccessful" }

local results = {}
for i = 8, #ARGV do
  local id = ARGV[i]
  local jobKey = srcBase .. id
  local dlqKey = dlqBase .. id
  local outcome
  if rcall("EXISTS", jobKey) == 0 then
    outcome = "missing"
  elseif rcall("EXISTS", dlqKey) == 1 then
    outcome = "dlq-has:" .. id
  elseif rcall("EXISTS", jobKey .. ":lock") == 1 then
    outcome = "active"
  else
    local state, kind, stateKey = locate(id)
    local parentKey = rcall("HGET", jobKey, "parentKey")
    if state == "active" then
      outcome = "active"
    elseif not movable[state] or kind == nil then
      outcome = "state:" .. state
    elseif parentKey then
      outcome = "flow:" .. parentKey
    else
      local old = rcall("HMGET", jobKey, "failedReason", "finishedOn", "deid")
      -- 1. the copy, with every field of the original
      rcall("HSET", dlqKey, unpack(rcall("HGETALL", jobKey)))
      rcall("HSET", dlqKey,
        "failedReason", "quarantined: " .. reason .. " (by " .. actor .. ")",
        "finishedOn", now,
        "qo.by", actor, "qo.at", now, "qo.reason", reason,
        "qo.from", state, "qo.queue", queueName,
        "qo.failedReason", old[1] or "", "qo.finishedOn", old[2] or "")
      for _, suffix in ipairs(SUBKEYS) do
        if rcall("EXISTS", jobKey .. suffix) == 1 then
          rcall("RENAME", jobKey .. suffix, dlqKey .. suffix)
        end
      end
      rcall("ZADD", KEYS[11], now, id)
      -- 2. the original goes, with its deduplication key if it still points at this job
      if kind == "zset" then
        rcall("ZREM", stateKey, id)
      else
        rcall("LREM", stateKey, 0, id)
      end
      rcall("DEL", jobKey)
      if old[3] then
        local dedupKey = srcBase .. "de:" .. old[3]
        if rcall("GET", dedupKey) == id then
          rcall("DEL", dedupKey, srcBase .. "dn:" .. old[3])
        end
      end
      -- 3. events, so QueueEvents listeners and Bull Board see what happened
      rcall("XADD", KEYS[10], "MAXLEN", "~", maxEvents(KEYS[9]), "*",
        "event", "removed", "jobId", id, "prev", state)
      rcall("XADD", KEYS[13], "MAXLEN", "~", maxEvents(KEYS[12]), "*",
        "event", "failed", "jobId", id, "failedReason",
        "quarantined: " .. reason .. " (by " .. actor .. ")", "prev", state)
      outcome = "moved:" .. state
    end
  end
  results[#results + 1] = outcome
end
return results
