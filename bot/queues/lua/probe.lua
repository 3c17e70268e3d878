--[[
  probe: which queues have work a drain would do now, for all queues, in ONE command.

  The drain cron calls this every tick, so an idle tick costs one Redis command (seed 001
  pays 4 per queue). Read-only. Nothing in PyPI or npm bullmq answers "is there runnable
  work" across queues in one call.

  Runnable work = not paused and any of: jobs in wait (minus a legacy marker), prioritized
  jobs, delayed jobs whose time has come, or active jobs whose lock expired (stalled: a
  drain's worker is what moves them back, so a probe that ignored them would strand them).

  KEYS[i]   '<prefix>:<queue>:' for each queue
  ARGV[1]   the highest delayed score that is due: now_ms * 0x1000 + 0xfff (BullMQ v5 scores)
  ARGV[2]   how many active jobs to check for a lock (bounded)

  Returns, per queue: { paused, ready, dueDelayed, stalled }
]]
local rcall = redis.call
local dueScore = ARGV[1]
local activeSample = tonumber(ARGV[2])

local result = {}
for i = 1, #KEYS do
  local base = KEYS[i]
  local paused = 0
  if rcall("HEXISTS", base .. "meta", "paused") == 1 then
    paused = 1
  end
  local ready = rcall("LLEN", base .. "wait")
  if ready > 0 then
    local tail = rcall("LINDEX", base .. "wait", -1)
    if string.sub(tail, 1, 2) == "0:" then
      ready = ready - 1
    end
  end
  ready = ready + rcall("ZCARD", base .. "prioritized")
  local due = rcall("ZCOUNT", base .. "delayed", 0, dueScore)
  local stalled = 0
  if activeSample > 0 then
    for _, id in ipairs(rcall("LRANGE", base .. "active", 0, activeSample - 1)) do
      if rcall("EXISTS", base .. id .. ":lock") == 0 then
        stalled = stalled + 1
      end
    end
  end
  result[#result + 1] = { paused, ready, due, stalled }
end
return result
