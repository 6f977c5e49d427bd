-- wrk script: post.lua's request, each connection waiting BENCH_DELAY_MS (10)
-- between requests, so the offered rate is about connections x 1000 / delay
-- per second (an open-ish load at a chosen rate; wrk alone only saturates).
dofile("bench/post.lua")
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "10")
function delay()
  return pause
end
