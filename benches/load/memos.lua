-- wrk script: POST /v1/memos with one audio file as the raw body, and a count of the answers by
-- status at the end (busy 503s are expected under overload; a 500 never is).
local f = assert(io.open(os.getenv("NEEDTAG_MEMO") or "benches/out/memo30.wav", "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.path = "/v1/memos"
wrk.headers["Content-Type"] = "audio/wav"
wrk.body = body

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do
      total[k] = (total[k] or 0) + v
    end
  end
  for k, v in pairs(total) do
    io.write(string.format("status %d: %d responses\n", k, v))
  end
end
