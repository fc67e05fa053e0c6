-- wrk script: DEPTH (default 16) pipelined requests per write,
--   wrk -s bench/http/pipeline.lua URL [-- DEPTH]
-- Built with wrk.format in init() and returned whole by request(): wrk then
-- parses the buffer once, knows it holds DEPTH requests and counts each of
-- the DEPTH responses (the pattern of wrk's own scripts/pipeline.lua).
init = function(args)
   local depth = tonumber(args[1]) or 16
   local r = {}
   for i = 1, depth do
      r[i] = wrk.format("GET", "/plaintext", { ["Host"] = "x" })
   end
   req = table.concat(r)
end

request = function()
   return req
end
