-- Admission of one batch of events for one client, atomically (see gate.go).
--
-- KEYS[1]          token bucket hash of the client (fields tokens, ts_ms)
-- KEYS[2]          work stream (not touched when ARGV[7] is 0)
-- KEYS[1+2i]       idempotency key of item i
-- KEYS[2+2i]       pending marker of item i
-- ARGV[1]          refill rate in tokens per second; <= 0 turns the rate limit off
-- ARGV[2]          bucket capacity (burst)
-- ARGV[3]          idempotency key TTL, milliseconds
-- ARGV[4]          extra life of an idle bucket beyond its time to fill, milliseconds
-- ARGV[5]          item count n
-- ARGV[6]          pending marker TTL, milliseconds
-- ARGV[7]          1: XADD each new item to the work stream; 0: reserve only (the caller
--                  enqueues elsewhere, e.g. on SQS, and releases the key if that fails)
-- then per item:   event id, message uuid, payload, metadata JSON, pending field count m,
--                  then m field/value pairs
--
-- Reply: {status, detail, kind_1, value_1, ..., kind_k, value_k}
--   status 'R': rate limited; detail = milliseconds until n tokens are available; no items.
--   status 'O': every item processed; detail = ''.
--   status 'F': XADD of item k+1 failed; detail = its error; items 1..k are reported,
--               item k+1 left no trace and the tokens of items k+1..n were given back.
--   kind 'A': accepted, value = stream entry id (the event id when reserving only);
--   kind 'D': duplicate, value = original event id.

local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local ttl_ms = ARGV[3]
local margin_ms = tonumber(ARGV[4])
local n = tonumber(ARGV[5])
local pending_ttl_ms = ARGV[6]
local enqueue = ARGV[7] == '1'

local limited = rate > 0
local tokens, now_ms

local function save_bucket()
  redis.call('HSET', KEYS[1], 'tokens', tokens, 'ts_ms', now_ms)
  -- Once full the bucket is indistinguishable from a missing one, so it may expire then.
  redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + margin_ms)
end

if limited then
  -- The server's clock, so that every API instance refills the bucket on the same time line.
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
  local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts_ms')
  tokens = tonumber(state[1])
  local ts_ms = tonumber(state[2])
  if tokens == nil or ts_ms == nil then
    tokens = burst
  else
    local elapsed_ms = now_ms - ts_ms
    -- A clock stepped back (e.g. after a failover) refills nothing rather than draining the bucket.
    if elapsed_ms < 0 then elapsed_ms = 0 end
    tokens = math.min(burst, tokens + elapsed_ms * rate / 1000)
  end
  if tokens < n then
    return {'R', math.ceil((n - tokens) * 1000 / rate)}
  end
  tokens = tokens - n
  -- Saved before the items, so that tokens stay taken even if a later command aborts the script.
  save_bucket()
end

local reply = {'O', ''}
local a = 8
for i = 1, n do
  local idem_key = KEYS[1 + 2 * i]
  local pending_key = KEYS[2 + 2 * i]
  local event_id = ARGV[a]
  local m = tonumber(ARGV[a + 4])
  if redis.call('SET', idem_key, event_id, 'NX', 'PX', ttl_ms) then
    local entry_id = event_id
    if enqueue then
      entry_id = redis.pcall('XADD', KEYS[2], '*',
        'uuid', ARGV[a + 1], 'payload', ARGV[a + 2], 'metadata', ARGV[a + 3])
    end
    if type(entry_id) == 'table' and entry_id.err then
      -- Nothing of this item may remain: a retry must not be taken for a duplicate,
      -- and the client must not pay for events the queue did not take.
      redis.call('DEL', idem_key)
      if limited then
        tokens = math.min(burst, tokens + (n - i + 1))
        save_bucket()
      end
      reply[1] = 'F'
      reply[2] = entry_id.err
      return reply
    end
    if m > 0 then
      redis.call('HSET', pending_key, unpack(ARGV, a + 5, a + 4 + 2 * m))
      redis.call('PEXPIRE', pending_key, pending_ttl_ms)
    end
    reply[#reply + 1] = 'A'
    reply[#reply + 1] = entry_id
  else
    reply[#reply + 1] = 'D'
    reply[#reply + 1] = redis.call('GET', idem_key)
  end
  a = a + 5 + 2 * m
end
return reply
