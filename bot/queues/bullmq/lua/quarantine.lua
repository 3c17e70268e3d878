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
  ARGV[8]  scan bound: how many entries of a list (wait, paused, active) to look at from
           each end before giving up
  ARGV[9]  "deep" to look through the whole list when the bound did not find the job
  ARGV[10..] job ids

  Returns one string per id: "moved:<state>" (a sorted set: O(log N)),
  "moved:<state>:<end>:<depth>:<scanned>" (a list: found <depth> entries from its <end>,
  "oldest" or "newest", after <scanned> entries compared in all), "missing",
  "dlq-has:<id>", "active", "flow:<parentKey>", "state:<state>" (a state that may not be
  moved), or "deep:<list>:<length>" (not within the bound of either end of a list longer
  than twice the bound, and "deep" not given: nothing moved).

  Why bounded: a Redis list has no index, so finding a job costs one comparison per entry
  passed (~35 ns each, measured), and the whole script holds Redis meanwhile. BullMQ LPUSHes
  new jobs at the head and workers take from the tail, so a poison job (usually the
  oldest) is near the tail: we look from the tail first, then from the head, each at most
  ARGV[8] entries (LPOS MAXLEN), and remove it with LREM from the end that found it (a
  count of -1 or 1 stops at the first match), so the cost is its depth from the nearer
  end, never the list's length. A job deeper than that from both ends is reported, not
  searched, unless the caller accepts one long call ("deep").
]]
local rcall = redis.call
local srcBase, dlqBase = ARGV[1], ARGV[2]
local now, reason, actor, queueName = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local bound, deep = tonumber(ARGV[8]), ARGV[9] == "deep"
local FIRST_ID = 10

local movable = {}
for state in string.gmatch(ARGV[7], "[^,]+") do
  movable[state] = true
end

local srcPaused = rcall("HEXISTS", KEYS[9], "paused") == 1

local function maxEvents(metaKey)
  return tonumber(rcall("HGET", metaKey, "opts.maxLenEvents")) or 10000
end

-- Where a job sits in a list, looked for from the oldest end (the tail) then the newest
-- (the head), at most `bound` entries each; with `deep`, through the whole list.
-- Returns end ("oldest"/"newest" or nil), depth from that end, entries compared, and
-- whether the job may be in the middle of a list too long to search within the bound.
local function findInList(key, id)
  local length = rcall("LLEN", key)
  if length == 0 then return nil, nil, 0, false end
  local fromTail = rcall("LPOS", key, id, "RANK", -1, "MAXLEN", bound)
  if fromTail then
    local depth = length - 1 - fromTail
    return "oldest", depth, depth + 1, false
  end
  local scanned = math.min(length, bound)
  if length > bound then
    local fromHead = rcall("LPOS", key, id, "MAXLEN", bound)
    if fromHead then return "newest", fromHead, scanned + fromHead + 1, false end
    scanned = scanned + math.min(length - bound, bound)
  end
  if length <= 2 * bound then return nil, nil, scanned, false end
  if not deep then return nil, nil, scanned, true end
  local anywhere = rcall("LPOS", key, id)  -- the caller accepted one long call
  if not anywhere then return nil, nil, scanned + length, false end
  scanned = scanned + anywhere + 1
  if anywhere < length - 1 - anywhere then return "newest", anywhere, scanned, false end
  return "oldest", length - 1 - anywhere, scanned, false
end

-- The state a job is in and how to take it out of there; mirrors getStateV2-8.lua.
-- For a list state, also where in the list (end, depth) and how many entries were compared.
local function locate(id)
  if rcall("ZSCORE", KEYS[6], id) then return "failed", "zset", KEYS[6] end
  if rcall("ZSCORE", KEYS[4], id) then return "delayed", "zset", KEYS[4] end
  if rcall("ZSCORE", KEYS[5], id) then return "prioritized", "zset", KEYS[5] end
  if rcall("ZSCORE", KEYS[7], id) then return "completed", nil, nil end
  if rcall("ZSCORE", KEYS[8], id) then return "waiting-children", nil, nil end
  -- A move of sorted-set states only (a bulk move of failed jobs) never searches a list:
  -- a job that left them is simply not movable, whatever list it went to.
  if not (movable["waiting"] or movable["paused"]) then return "not " .. ARGV[7], nil, nil end
  local scannedAll, tooLong = 0, nil
  local lists = {
    { "active", KEYS[3], "active" },
    { srcPaused and "paused" or "waiting", KEYS[1], "wait" },
    { "paused", KEYS[2], "paused" },
  }
  for _, list in ipairs(lists) do
    local state, key, name = list[1], list[2], list[3]
    local listEnd, depth, scanned, long = findInList(key, id)
    scannedAll = scannedAll + scanned
    if listEnd then
      if state == "active" then return "active", nil, nil end
      return state, "list", key, listEnd, depth, scannedAll
    end
    if long and tooLong == nil then tooLong = "deep:" .. name .. ":" .. rcall("LLEN", key) end
  end
  if tooLong then return tooLong, nil, nil end
  return "unknown", nil, nil
end

local SUBKEYS = { ":logs", ":dependencies", ":processed", ":failed", ":unsuccessful" }

local results = {}
for i = FIRST_ID, #ARGV do
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
    local state, kind, stateKey, listEnd, depth, scanned = locate(id)
    local parentKey = rcall("HGET", jobKey, "parentKey")
    if state == "active" then
      outcome = "active"
    elseif string.sub(state, 1, 5) == "deep:" then
      outcome = state
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
        -- from the end that found it, stopping at the first match: `depth` entries again
        rcall("LREM", stateKey, listEnd == "oldest" and -1 or 1, id)
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
      if kind == "list" then
        outcome = outcome .. ":" .. listEnd .. ":" .. depth .. ":" .. (scanned + depth + 1)
      end
    end
  end
  results[#results + 1] = outcome
end
return results
