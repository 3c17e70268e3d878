--[[
  snapshot: everything `/queue snapshot` shows, for every queue, in ONE round trip.

  Why a script of our own: PyPI bullmq's getJobCounts is one round trip per queue and has
  no sampling; a snapshot of 5 queues would cost 5 calls plus one per sampled job. Here the
  cost is constant in the backlog: counts are LLEN/ZCARD, samples are bounded ranges.
  The counts follow npm bullmq 5's getCounts-1.lua exactly (a legacy "0:" marker at the tail
  of wait/paused is not a job), but read-only: it does not pop the marker.

  It reads only what the views show: the names of the next ARGV[1] jobs to run (a page, as
  a dashboard shows 10) and the reasons of the newest ARGV[2] failed jobs. The next to run are
  taken in npm bullmq's order (moveToActive: the wait list's tail, then the prioritized set's
  head), so a sample stops where it is full instead of reading every state's page.

  KEYS[2i-1]  '<prefix>:<queue>:'      (key bases, as BullMQ passes its 'prefix' key)
  KEYS[2i]    '<prefix>:<queue>-dlq:'
  ARGV[1]     waiting sample size (next to run)
  ARGV[2]     failed sample size (newest)
  ARGV[3]     metrics points to read (the newest N per-minute counts; "0" or absent: none)
  ARGV[4]     queueops' depth-sample key base ('queueops:depth:'; "" or absent: none)
  ARGV[5]     depth samples to read where no Worker records metrics (the newest N)

  Throughput (issue 14): where Workers record metrics (npm bullmq's Worker option
  `metrics: {maxDataPoints}`, written by moveToFinished's collectMetrics), each of
  '<queue>:metrics:completed' and '<queue>:metrics:failed' is a hash (count, prevTS,
  prevCount) and its ':data' list holds per-minute counts, newest first. They are read here,
  as npm bullmq's getMetrics-2.lua reads them but with a bounded LRANGE (ARGV[3] points), so
  a snapshot with throughput stays one command: PyPI bullmq has no getMetrics.

  Returns, per queue: { counts[8], paused, oldestRunnableSince, waitingNames[], failedReasons[],
  dlqDepth, metrics, samples } where samples are "ms:depth" entries, newest first, and metrics is { completedMeta[3], completedData[], failedMeta[3],
  failedData[] } (empty when ARGV[3] is 0), with counts in the order waiting, active, delayed, prioritized, waiting-children,
  paused, failed, completed; oldestRunnableSince is -1 when nothing waits.
]]
local rcall = redis.call
local waitSample = tonumber(ARGV[1])
local failedSample = tonumber(ARGV[2])
local metricPoints = tonumber(ARGV[3] or "0") or 0

local function listCount(key)
  local n = rcall("LLEN", key)
  if n > 0 then
    local tail = rcall("LINDEX", key, -1)
    if tail and string.sub(tail, 1, 2) == "0:" then
      return n - 1
    end
  end
  return n
end

-- Reads name, timestamp, delay of each id; adds the names to `names` when given (nil: the
-- job is read for its age only). Returns the new oldest and how many jobs were read.
local function sampleRunnable(base, ids, names, oldest)
  local read = 0
  for _, id in ipairs(ids) do
    if string.sub(id, 1, 2) ~= "0:" then
      local fields = rcall("HMGET", base .. id, "name", "timestamp", "delay")
      if fields[1] then
        read = read + 1
        if names then
          names[#names + 1] = fields[1]
        end
        -- A job that was delayed became runnable at timestamp + delay, not at timestamp.
        local since = (tonumber(fields[2]) or 0) + (tonumber(fields[3]) or 0)
        if oldest == -1 or since < oldest then
          oldest = since
        end
      end
    end
  end
  return oldest, read
end

local result = {}
for i = 1, #KEYS, 2 do
  local base = KEYS[i]
  local dlqBase = KEYS[i + 1]
  local counts = {
    listCount(base .. "wait"),
    rcall("LLEN", base .. "active"),
    rcall("ZCARD", base .. "delayed"),
    rcall("ZCARD", base .. "prioritized"),
    rcall("ZCARD", base .. "waiting-children"),
    listCount(base .. "paused"),
    rcall("ZCARD", base .. "failed"),
    rcall("ZCARD", base .. "completed"),
  }
  local paused = 0
  if rcall("HEXISTS", base .. "meta", "paused") == 1 then
    paused = 1
  end

  local names = {}
  local oldest = -1
  if waitSample > 0 then
    -- wait, or paused (npm bullmq 5 moves the wait list there while a queue is paused): new
    -- jobs are LPUSHed, so the tail holds the oldest, the next to run. Only what still fits.
    local left = waitSample
    for _, list in ipairs({ { "wait", counts[1] }, { "paused", counts[6] } }) do
      if left > 0 and list[2] > 0 then
        local read
        local ids = rcall("LRANGE", base .. list[1], -left, -1)
        oldest, read = sampleRunnable(base, ids, names, oldest)
        left = left - read
      end
    end
    -- prioritized runs once the list is empty: its head fills what is left of the sample.
    -- With the sample full, its head is still read for the age (one job, not shown by name).
    if counts[4] > 0 then
      local fill = left > 0 and left or 1
      oldest = sampleRunnable(base, rcall("ZRANGE", base .. "prioritized", 0, fill - 1),
        left > 0 and names or nil, oldest)
    end
  end

  local reasons = {}
  if failedSample > 0 then
    for _, id in ipairs(rcall("ZREVRANGE", base .. "failed", 0, failedSample - 1)) do
      local reason = rcall("HGET", base .. id, "failedReason")
      if reason then
        reasons[#reasons + 1] = string.sub(reason, 1, 300)
      end
    end
  end

  local metrics = {}
  if metricPoints > 0 then
    for _, kind in ipairs({ "completed", "failed" }) do
      local key = base .. "metrics:" .. kind
      metrics[#metrics + 1] = rcall("HMGET", key, "count", "prevTS", "prevCount")
      metrics[#metrics + 1] = rcall("LRANGE", key .. ":data", 0, metricPoints - 1)
    end
  end

  -- No Worker records metrics here: the depth samples the tick writes (probe.lua, the key
  -- '<sample base><prefix>:<queue>', in the queue's slot on a cluster) give a rate instead.
  local samples = {}
  local sampleBase = ARGV[4] or ""
  local samplePoints = tonumber(ARGV[5] or "0") or 0
  if sampleBase ~= "" and samplePoints > 0 and not (metrics[1] and metrics[1][1]) then
    samples = rcall("LRANGE", sampleBase .. string.sub(base, 1, -2), 0, samplePoints - 1)
  end

  result[#result + 1] = { counts, paused, oldest, names, reasons, rcall("ZCARD", dlqBase .. "failed"),
    metrics, samples }
end
return result
