--[[
  probe: which queues have work a drain would do now, for all queues, in ONE command; and,
  for the scheduler's tick, what the watcher needs and a depth sample, in that same command.

  The drain cron calls this every tick, so an idle tick costs one Redis command (a drain endpoint's own check
  pays 4 per queue). Nothing in PyPI or npm bullmq answers "is there runnable work" across
  queues in one call. Without the tick options (ARGV[3] = "0", no extras) it only reads.

  Runnable work = not paused and any of: jobs in wait (minus a legacy marker), prioritized
  jobs, delayed jobs whose time has come, or active jobs whose lock expired (stalled: a
  drain's worker is what moves them back, so a probe that ignored them would strand them).

  KEYS[2i-1]  '<prefix>:<queue>:'      KEYS[2i]  '<prefix>:<queue>-dlq:'
  ARGV[1]     the highest delayed score that is due: now_ms * 0x1000 + 0xfff (BullMQ v5)
  ARGV[2]     how many active jobs to check for a lock (bounded)
  ARGV[3]     depth samples to keep per queue ("0": take none)
  ARGV[4]     sample key base ('<state>:depth:'), ARGV[5] now (ms)
  ARGV[6..]   extras, each "kind key [arg]" counted after the queues:
              "xpending <stream> <group>"  entries pending in a consumer group
              "zdue <zset> <max score>"    members scored at or under max ("now": ARGV[5])
              "cron <hash> <lease> <owner> <ttl ms> <default mode> <idle tick cost>
                <wake cost>"  the drain cron: when the mode is cron and it is not paused,
                take or renew the leader lease (SET NX PX / PEXPIRE by its owner), and as
                leader record the tick (last_tick, and idle_ticks, last_idle and the cost the
                bot measured for its previous idle tick when no queue has work, and the
                instant drains' blocking commands over that cadence: "" is none running, so
                wake_cost is deleted): an idle tick is then recorded by this same command.
                Returns {mode, paused, every_ms, leader}.

  Returns { per queue: { paused, ready, dueDelayed, stalled, failed, completed, dlq,
  oldestRunnableSince or -1, counts[8], metricsCompleted or -1 }, ..., extras: { count, ... } },
  metricsCompleted being the `count` of '<queue>:metrics:completed' where Workers record
  metrics (npm bullmq's collectMetrics; one HGET): the watcher's no-completions rule sees
  jobs completed even when they are removed on completion. Counts as
  lua/snapshot.lua has them (npm bullmq's getJobCounts, in its order), so /metrics exports
  what a snapshot would say without a command of its own. oldestRunnableSince, as there,
  is the oldest of the wait list's tail, the prioritized head and the paused list's tail.
]]
local rcall = redis.call
local dueScore = ARGV[1]
local activeSample = tonumber(ARGV[2])
local keepSamples = tonumber(ARGV[3])

local function runnableSince(base, id)
  if not id or string.sub(id, 1, 2) == "0:" then
    return -1
  end
  local f = rcall("HMGET", base .. id, "timestamp", "delay")
  if not f[1] then
    return -1
  end
  return (tonumber(f[1]) or 0) + (tonumber(f[2]) or 0)
end

local result = {}
for i = 1, #KEYS, 2 do
  local base = KEYS[i]
  local paused = 0
  if rcall("HEXISTS", base .. "meta", "paused") == 1 then
    paused = 1
  end
  local ready = rcall("LLEN", base .. "wait")
  local tail = nil
  if ready > 0 then
    tail = rcall("LINDEX", base .. "wait", -1)
    if string.sub(tail, 1, 2) == "0:" then
      ready = ready - 1
    end
  end
  local waitCount = ready
  local oldest = runnableSince(base, tail)
  local prioritized = rcall("ZCARD", base .. "prioritized")
  if prioritized > 0 then
    local since = runnableSince(base, rcall("ZRANGE", base .. "prioritized", 0, 0)[1])
    if since >= 0 and (oldest < 0 or since < oldest) then
      oldest = since
    end
  end
  -- npm bullmq 5 moves the wait list here while a queue is paused: its tail waits longest.
  local pausedCount = rcall("LLEN", base .. "paused")
  if pausedCount > 0 then
    local pausedTail = rcall("LINDEX", base .. "paused", -1)
    if string.sub(pausedTail, 1, 2) == "0:" then
      pausedCount = pausedCount - 1
    end
    local since = runnableSince(base, pausedTail)
    if since >= 0 and (oldest < 0 or since < oldest) then
      oldest = since
    end
  end
  ready = ready + prioritized
  local due = rcall("ZCOUNT", base .. "delayed", 0, dueScore)
  local stalled = 0
  if activeSample > 0 then
    for _, id in ipairs(rcall("LRANGE", base .. "active", 0, activeSample - 1)) do
      if rcall("EXISTS", base .. id .. ":lock") == 0 then
        stalled = stalled + 1
      end
    end
  end
  if keepSamples > 0 then
    local sampleKey = ARGV[4] .. string.sub(base, 1, -2)
    rcall("LPUSH", sampleKey, ARGV[5] .. ":" .. (waitCount + pausedCount + prioritized))
    rcall("LTRIM", sampleKey, 0, keepSamples - 1)
  end
  local failed = rcall("ZCARD", base .. "failed")
  local completed = rcall("ZCARD", base .. "completed")
  local counts = { waitCount, rcall("LLEN", base .. "active"), rcall("ZCARD", base .. "delayed"),
    prioritized, rcall("ZCARD", base .. "waiting-children"), pausedCount, failed, completed }
  result[#result + 1] = { paused, ready, due, stalled, failed, completed,
    rcall("ZCARD", KEYS[i + 1] .. "failed"), oldest, counts,
    tonumber(rcall("HGET", base .. "metrics:completed", "count") or -1) or -1 }
end

local anyRunnable = false
for _, row in ipairs(result) do
  if row[1] == 0 and (row[2] + row[3] + row[4]) > 0 then
    anyRunnable = true
  end
end

local extras = {}
local i = 6
while i <= #ARGV do
  local kind = ARGV[i]
  if kind == "xpending" then
    local ok, info = pcall(rcall, "XPENDING", ARGV[i + 1], ARGV[i + 2])
    extras[#extras + 1] = (ok and info[1]) or 0
    i = i + 3
  elseif kind == "zdue" then
    local max = ARGV[i + 2]
    if max == "now" then
      max = ARGV[5]
    end
    extras[#extras + 1] = rcall("ZCOUNT", ARGV[i + 1], "-inf", max)
    i = i + 3
  elseif kind == "cron" then
    local cron, lease, owner = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    local fields = rcall("HMGET", cron, "mode", "paused", "every_ms")
    local mode = fields[1] or ARGV[i + 5]
    local paused = fields[2] or "0"
    local leader = 0
    if mode == "cron" and paused ~= "1" then
      if rcall("GET", lease) == owner then
        rcall("PEXPIRE", lease, ARGV[i + 4])
        leader = 1
      elseif rcall("SET", lease, owner, "NX", "PX", ARGV[i + 4]) then
        leader = 1
      end
      if leader == 1 then
        rcall("HSET", cron, "last_tick", ARGV[5])
        if not anyRunnable then
          rcall("HINCRBY", cron, "idle_ticks", 1)
          rcall("HSET", cron, "last_idle", ARGV[5])
          if ARGV[i + 6] ~= "" then
            rcall("HSET", cron, "idle_tick_cost", ARGV[i + 6])
          end
          if ARGV[i + 7] ~= "" then
            rcall("HSET", cron, "wake_cost", ARGV[i + 7])
          else
            rcall("HDEL", cron, "wake_cost")
          end
        end
      end
    end
    extras[#extras + 1] = { mode, paused, fields[3] or "", leader }
    i = i + 8
  else
    return redis.error_reply("probe: unknown extra " .. tostring(kind))
  end
end
result[#result + 1] = extras
return result
