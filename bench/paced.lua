-- wrk script: post.lua's request, each connection pausing between requests
-- for a random time with mean BENCH_DELAY_MS (10): exponentially distributed,
-- so the connections' requests arrive as a Poisson stream at about
-- connections x 1000 / (delay + latency) per second rather than in lockstep
-- bursts (a fixed pause keeps all connections in phase, and the run then
-- measures how long a burst of every connection at once takes to drain).
dofile("bench/post.lua")
local mean = tonumber(os.getenv("BENCH_DELAY_MS") or "10")
math.randomseed(os.time())
function delay()
  return math.floor(-math.log(1 - math.random()) * mean + 0.5)
end
