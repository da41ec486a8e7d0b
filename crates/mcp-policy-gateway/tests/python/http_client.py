"""A client on the official Python MCP SDK (`mcp` from PyPI) over streamable HTTP, driven by
tests/http_python_sdk.rs: argv[1] is a JSON spec {url, token?, approve?, calls: [[tool, args]]};
it initializes, lists tools, makes the calls, and prints what it saw as one JSON object.
Elicitation requests (approvals) are accepted or declined per `approve`."""
import json, sys, anyio, httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

asked = []
APPROVE = True

async def elicit(context, params):
    asked.append(params.message)
    if APPROVE:
        return types.ElicitResult(action="accept", content={"approve": True})
    return types.ElicitResult(action="decline")

async def main():
    global APPROVE
    spec = json.loads(sys.argv[1])
    APPROVE = spec.get("approve", True)
    headers = {}
    if spec.get("token"):
        headers["Authorization"] = "Bearer " + spec["token"]
    out = {"calls": []}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with streamable_http_client(spec["url"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            callback = elicit if "approve" in spec else None
            async with ClientSession(read, write, elicitation_callback=callback) as session:
                init = await session.initialize()
                out["protocol"] = init.protocol_version
                tools = await session.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                for name, args in spec["calls"]:
                    r = await session.call_tool(name, args)
                    out["calls"].append({
                        "tool": name,
                        "is_error": bool(r.is_error),
                        "text": "".join(c.text for c in r.content if getattr(c, "type", "") == "text"),
                    })
    out["asked"] = asked
    print(json.dumps(out))

anyio.run(main)
