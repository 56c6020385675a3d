-- wrk script: POST /v1/memos with one audio file as the raw body. wrk reports the non-2xx
-- answers (busy 503s) separately.
local f = assert(io.open(os.getenv("NEEDTAG_MEMO") or "benches/out/memo30.wav", "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "audio/wav"
wrk.body = body
