"""A client on the official Python MCP SDK (`mcp` from PyPI), driven by tests/python_sdk.rs:
it starts the command given in argv[1] (a JSON spec), lists tools, makes the calls, and prints
what it saw as one JSON object. Elicitation requests are accepted or declined per the spec."""
import json, sys, anyio
from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client

async def elicit(context, params):
    asked.append(params.message)
    await anyio.sleep(ELICIT_DELAY)
    return types.ElicitResult(action="accept" if APPROVE else "decline", content={"approve": True} if APPROVE else None)

asked = []
APPROVE = True
ELICIT_DELAY = 0

async def main():
    global APPROVE, ELICIT_DELAY
    spec = json.loads(sys.argv[1])
    APPROVE = spec.get("approve", True)
    ELICIT_DELAY = spec.get("elicit_delay", 0)
    out = {"calls": []}
    params = StdioServerParameters(command=spec["command"], args=spec["args"])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, elicitation_callback=elicit) as session:
            init = await session.initialize()
            out["protocol"] = init.protocol_version
            out["server"] = init.server_info.name
            tools = await session.list_tools()
            out["tools"] = sorted(t.name for t in tools.tools)
            for call in spec["calls"]:
                name, args = call[0], call[1]
                opts = call[2] if len(call) > 2 else {}
                if "sleep_before" in opts:
                    await anyio.sleep(opts["sleep_before"])
                try:
                    r = await session.call_tool(name, args, read_timeout_seconds=opts.get("timeout"))
                except Exception as e:  # a timeout: the SDK cancels the request
                    out["calls"].append({"tool": name, "exception": type(e).__name__ + ": " + str(e)})
                    continue
                out["calls"].append({
                    "tool": name,
                    "is_error": bool(r.is_error),
                    "text": "".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
                    "structured": r.structured_content,
                })
    out["asked"] = asked
    print(json.dumps(out))

anyio.run(main)
