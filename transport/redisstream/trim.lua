-- Trims the entries every consumer group has finished with: KEYS[1] stream. Reply: entries removed.
--
-- An entry is finished for a group once the group has delivered it (its id is at most the group's
-- last-delivered-id) and no consumer still holds it (its id is below the group's oldest pending id).
-- Entry ids are compared as decimal strings because their 64-bit parts do not fit Lua's doubles.

local U64_MAX = '18446744073709551615'

local function cmp_decimal(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  if a == b then return 0 end
  return a < b and -1 or 1
end

local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return ms, seq
end

local function cmp_id(a, b)
  local ams, aseq = split(a)
  local bms, bseq = split(b)
  local c = cmp_decimal(ams, bms)
  if c ~= 0 then return c end
  return cmp_decimal(aseq, bseq)
end

local function incr_decimal(s)
  local digits = {string.byte(s, 1, -1)}
  for i = #digits, 1, -1 do
    if digits[i] == 57 then
      digits[i] = 48
    else
      digits[i] = digits[i] + 1
      return string.char(unpack(digits))
    end
  end
  return '1' .. string.char(unpack(digits))
end

-- The smallest id after id, so that MINID also removes the last delivered entry itself.
local function next_id(id)
  local ms, seq = split(id)
  if seq ~= U64_MAX then return ms .. '-' .. incr_decimal(seq) end
  if ms ~= U64_MAX then return incr_decimal(ms) .. '-0' end
  return id
end

if redis.call('TYPE', KEYS[1])['ok'] == 'none' then
  return 0
end
local min_id = nil
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local group = {}
  for i = 1, #flat, 2 do group[flat[i]] = flat[i + 1] end
  local keep_from = next_id(group['last-delivered-id'])
  if group['pending'] > 0 then
    local oldest_pending = redis.call('XPENDING', KEYS[1], group['name'])[2]
    if cmp_id(oldest_pending, keep_from) < 0 then keep_from = oldest_pending end
  end
  if min_id == nil or cmp_id(keep_from, min_id) < 0 then min_id = keep_from end
end
-- Without a group nobody has finished with anything, and the work stream must not lose an entry.
if min_id == nil then
  return 0
end
return redis.call('XTRIM', KEYS[1], 'MINID', min_id)
