-- Depth of one consumer group: KEYS[1] stream, ARGV[1] group, ARGV[2] count cap, ARGV[3] page size.
-- Reply: {lag, pending}; a missing stream is {0, 0}, a missing group {XLEN, 0}: its consumers,
-- when they subscribe, create it from the stream's first entry, so every entry waits for it.
if redis.call('TYPE', KEYS[1])['ok'] == 'none' then
  return {0, 0}
end
local cap = tonumber(ARGV[2])
local page_size = tonumber(ARGV[3])

for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local group = {}
  for i = 1, #flat, 2 do group[flat[i]] = flat[i + 1] end
  if group['name'] == ARGV[1] then
    local lag = group['lag']
    -- Redis reports no lag once entries after the group's position were deleted; count them instead.
    if type(lag) ~= 'number' or lag < 0 then
      local last = group['last-delivered-id']
      if last == '0-0' then
        lag = redis.call('XLEN', KEYS[1])
      else
        lag = 0
        local start = '(' .. last
        while lag < cap do
          local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(page_size, cap - lag))
          if #page == 0 then break end
          lag = lag + #page
          start = '(' .. page[#page][1]
        end
      end
    end
    -- Redis's lag is entries-added minus the group's entries-read, and entries-read drifts (a
    -- group recreated or moved after Redis lost data): it once reported 8,053 waiting for a group
    -- that had delivered the stream's last entry, with the stream trimmed empty. Nothing waits past
    -- the last entry, and no more can wait than the stream holds.
    local last_generated = redis.call('XINFO', 'STREAM', KEYS[1])
    for i = 1, #last_generated, 2 do
      if last_generated[i] == 'last-generated-id' and last_generated[i + 1] == group['last-delivered-id'] then
        lag = 0
      end
    end
    lag = math.min(lag, redis.call('XLEN', KEYS[1]))
    return {lag, group['pending']}
  end
end
return {redis.call('XLEN', KEYS[1]), 0}
