"""`medground mcp` answers a real MCP client (mcp.client.stdio + ClientSession): tools/list, then tools/call
of segment (a box on a small picture) and measure (on the mask segment wrote), and a bad call's error."""
from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("mcp")

from _servehelpers import disk_png  # noqa: E402


def _text(res) -> str:
    return "".join(getattr(c, "text", "") for c in res.content)


def _is_error(res) -> bool:
    return bool(getattr(res, "is_error", getattr(res, "isError", False)))


def test_mcp_tools_list_and_call(tmp_path):
    import anyio
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    png = disk_png(tmp_path / "disk.png")
    out = tmp_path / "seg"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    params = StdioServerParameters(command=sys.executable, args=["-m", "medground", "mcp", "--out-root",
                                                                 str(tmp_path / "mcp_out")], env=env)

    async def session():
        async with stdio_client(params) as (read, write):
            async with ClientSession(read, write) as s:
                await s.initialize()
                tools = {t.name: t for t in (await s.list_tools()).tools}
                seg = await s.call_tool("segment", {"image_path": str(png), "boxes": [[14, 18, 46, 50]],
                                                    "labels": ["disk"], "out_dir": str(out)})
                meas = await s.call_tool("measure", {"image_path": str(png), "mask_path": str(out / "disk.png")})
                bad = await s.call_tool("segment", {"image_path": str(png), "boxes": [[14, 18, 146, 50]]})
                return tools, seg, meas, bad

    tools, seg, meas, bad = anyio.run(session)
    assert {"segment", "measure", "report", "ask", "classify", "search"} <= set(tools)
    assert "image_path" in json.dumps(tools["segment"].inputSchema if hasattr(tools["segment"], "inputSchema")
                                      else tools["segment"].input_schema)
    assert not _is_error(seg), _text(seg)
    doc = json.loads(_text(seg))
    f = doc["findings"][0]
    assert f["name"] == "disk" and f["present"] and doc["out_dir"] == str(out.resolve())
    assert (out / "disk.png").is_file() and (out / "findings.json").is_file()
    assert not _is_error(meas), _text(meas)
    m = json.loads(_text(meas))
    assert m["voxels"] == f["area_px"] and abs(m["centroid"]["voxel"][0] - 30) < 1.5
    assert _is_error(bad) and "outside the image" in _text(bad)
