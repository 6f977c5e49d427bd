-- wrk script: a ~1 KB non-streamed chat request (BENCH_MODEL picks the target).
local model = os.getenv("BENCH_MODEL") or "deepseek/deepseek-flash"
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 20)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "tg-demo-key")
wrk.body = '{"model":"' .. model .. '","max_tokens":16,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"' .. text .. '"}]}'
