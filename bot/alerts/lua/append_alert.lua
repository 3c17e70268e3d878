--[[
  append_alert: store one alert, unless too many alerts are still unhandled, and trim
  only what has been handled.

  An entry is handled once the consumer group acked it (done, or parked in the dead-letter
  stream). Everything at or after the oldest pending entry, and everything the group has
  not read yet, is unhandled and is never trimmed: XTRIM MINID below both. Over the bound
  the caller answers 503, and Alertmanager sends the alert again later.

  KEYS[1]  the alert stream
  ARGV[1]  the consumer group
  ARGV[2]  the event (JSON)
  ARGV[3]  trim handled entries once the stream holds more than this many
  ARGV[4]  the bound on unhandled entries (pending + not yet read)

  Returns { entry id, or "" when over the bound; unhandled entries before this one }
]]
local stream, group = KEYS[1], ARGV[1]
local trim_over, bound = tonumber(ARGV[3]), tonumber(ARGV[4])

local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then
      return flat[i + 1]
    end
  end
  return nil
end

local len = redis.call("XLEN", stream)
local unhandled = len
if len > 0 then
  local info = nil
  for _, g in ipairs(redis.call("XINFO", "GROUPS", stream)) do
    if field(g, "name") == group then
      info = g
    end
  end
  if info then
    local pending = tonumber(field(info, "pending"))
    local last = field(info, "last-delivered-id")
    if len > trim_over then
      local keep_from = last
      if pending > 0 then
        keep_from = redis.call("XPENDING", stream, group)[2]
      end
      redis.call("XTRIM", stream, "MINID", keep_from)
    end
    local lag = field(info, "lag")
    if not lag then -- Redis cannot tell (entries deleted after the last read): count them
      lag = #redis.call("XRANGE", stream, "(" .. last, "+", "COUNT", bound + 1)
    end
    unhandled = pending + tonumber(lag)
  end
end
if unhandled >= bound then
  return { "", unhandled }
end
return { redis.call("XADD", stream, "*", "event", ARGV[2]), unhandled }
