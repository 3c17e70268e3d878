--[[
  scan_page: one page of a queue's jobs in one state, newest first, with the fields `find`,
  `failures` and the filtered actions need, each cut to a bound.

  Why a script: neither BullMQ has a search (bullmq #2135), and PyPI bullmq's getJobs
  reads every job whole (HGETALL through Job.fromId, a round trip or a pipeline entry per
  job). A payload or a failedReason can be megabytes: an HMGET hands the whole field to
  the client, so a page of large jobs would move hundreds of megabytes and hold Redis for
  the copy. Here each field is cut inside Redis (the client matches only the first
  characters anyway), a page ends early past ARGV[8] bytes, and a page of a few hundred
  jobs is one call of about a millisecond, however large the queue (ZREVRANGE/LRANGE by
  index: O(log N + page)).

  KEYS[1]  the state's key: a sorted set (failed, completed, delayed, prioritized,
           waiting-children) or a list (wait, paused, active)
  ARGV[1]  key base '<prefix>:<queue>:'
  ARGV[2]  "zset" or "list"
  ARGV[3]  index of the page's first job, from the newest end
  ARGV[4]  page size
  ARGV[5]  "1": also read the payload (data); "0": not
  ARGV[6]  bytes of a reason, a stack frame and a name to return
  ARGV[7]  bytes of a payload to return: a longer one is not read ("" and its length)
  ARGV[8]  bytes returned after which the page ends early
  ARGV[9]  "1": also the first `at ...` frame of the job's latest stack trace

  Returns { jobs looked at (the next page starts that many further), 1 when the state has
  no job past them, a JSON array of rows [id, name, timestamp, processedOn, finishedOn,
  attemptsMade, failedReason, frame, data, data length] } ("" for a field the job lacks; a
  row whose hash is gone has id only and name false).
]]
local rcall = redis.call
local base, kind = ARGV[1], ARGV[2]
local first, size = tonumber(ARGV[3]), tonumber(ARGV[4])
local wantData, cutBytes, dataBytes = ARGV[5] == "1", tonumber(ARGV[6]), tonumber(ARGV[7])
local pageBytes, wantFrame = tonumber(ARGV[8]), ARGV[9] == "1"

local ids
if kind == "zset" then
  ids = rcall("ZREVRANGE", KEYS[1], first, first + size - 1)
else
  ids = rcall("LRANGE", KEYS[1], first, first + size - 1)
end

-- A prefix of `text` of at most `limit` bytes, cut back to a whole UTF-8 character.
local function cut(text, limit)
  if not text then
    return ""
  end
  if #text <= limit then
    return text
  end
  local at = limit
  local following = string.byte(text, at + 1)
  while at > 0 and following >= 128 and following < 192 do
    following = string.byte(text, at)
    at = at - 1
  end
  return string.sub(text, 1, at)
end

local rows, bytes, looked = {}, 0, 0
for _, id in ipairs(ids) do
  looked = looked + 1
  local f = rcall("HMGET", base .. id, "name", "timestamp", "processedOn", "finishedOn",
    "atm", "failedReason")
  if not f[1] and not f[2] then
    rows[#rows + 1] = { id, false }
  else
    local frame = ""
    if wantFrame then
      local stack
      if rcall("HSTRLEN", base .. id, "stacktrace") <= 65536 then
        stack = rcall("HGET", base .. id, "stacktrace")
      end
      -- Not decoded (cjson.decode doubled a page's time): the latest stack is the array's
      -- last string, after its last '","' (or the opening '["'); its first frame follows
      -- the first escaped newline and "at ". A frame cut oddly by an escaped quote inside
      -- a stack only makes that job's cluster text a little different, never a long call.
      if stack and #stack > 2 then
        local from = 1
        local at = string.find(stack, '","', from, true)
        while at do
          from = at + 3
          at = string.find(stack, '","', from, true)
        end
        local line = string.match(stack, "\\n%s*(at .-)\\n", from)
          or string.match(stack, '\\n%s*(at [^"]-)"%]$', from)
        if line then
          frame = cut(line, cutBytes)
        end
      end
    end
    local data, length = "", 0
    if wantData then
      -- A payload over ARGV[7] bytes is not read at all (HSTRLEN is O(1); reading a
      -- 50 MB payload into Lua would hold Redis for the copy): its length says why.
      length = rcall("HSTRLEN", base .. id, "data")
      if length <= dataBytes then
        data = rcall("HGET", base .. id, "data") or ""
      end
    end
    local reason = cut(f[6], cutBytes)
    rows[#rows + 1] = { id, cut(f[1], cutBytes), f[2] or "", f[3] or "", f[4] or "",
      f[5] or "", reason, frame, data, length }
    bytes = bytes + #reason + #data + #frame
  end
  if bytes >= pageBytes then
    break
  end
end
local ended = 0
if #ids < size and looked == #ids then
  ended = 1
end
return { looked, ended, cjson.encode(rows) }
