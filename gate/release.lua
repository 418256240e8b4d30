-- Compare-and-delete: KEYS[1] idempotency key, ARGV[1] the event id it must still map to.
-- A key that now belongs to another admission is left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
