-- Release of reservations whose events could not be enqueued (see Gate.Release).
--
-- KEYS[2i-1]  idempotency key of item i
-- KEYS[2i]    pending marker of item i
-- ARGV[i]     event id of item i: the key is deleted only while it still maps to it
for i = 1, #ARGV do
  if redis.call('GET', KEYS[2 * i - 1]) == ARGV[i] then
    redis.call('DEL', KEYS[2 * i - 1])
  end
  redis.call('DEL', KEYS[2 * i])
end
return #ARGV
