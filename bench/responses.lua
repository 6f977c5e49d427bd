-- wrk script: the Responses API twin of post.lua — the same model, limit,
-- instructions and ~1 KB of text, so its CPU per request compares with the
-- chat path's in one run (BENCH_MODEL picks the target).
local model = os.getenv("BENCH_MODEL") or "deepseek/deepseek-flash"
local text = string.rep("The quick brown fox jumps over the lazy dog. ", 20)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "tg-demo-key")
wrk.body = '{"model":"' .. model .. '","max_output_tokens":16,"store":false,"instructions":"You are terse.","input":"' .. text .. '"}'
