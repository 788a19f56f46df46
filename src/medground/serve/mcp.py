"""``medground mcp``: a stdio MCP server so that an LLM agent can use medground as its eyes.

Tools (paths in, JSON out; files go to an output folder that each result names in ``out_dir``):
segment, measure, report, ask, classify, search, plus info. They share their code with the REST API's
jobs (:mod:`medground.serve.tasks`). stdout carries the protocol: everything else goes to stderr.
"""
from __future__ import annotations

import functools
import logging
import os
import secrets
from pathlib import Path
from typing import Optional

from medground.io.image import MedGroundInputError

log = logging.getLogger("medground.mcp")

INSTRUCTIONS = (
    "medground reads medical images (CT/MRI volumes, X-ray, ultrasound, photos of slices; DICOM, NIfTI, NRRD, "
    "PNG/JPG) in words. Give file paths on the machine running this server. Coordinates are voxel indices of "
    "the image as stored: x = first array axis (picture column), y = second (row), z = slice; boxes are "
    "inclusive [x0, y0, x1, y1]. Use 'info' first to see an image's shape; 'segment' writes masks (PNG for 2D, "
    "NIfTI for 3D), findings.json and overlays to out_dir; 'measure' sizes a mask file.")


def _server_class():
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError

        return MCPServer, ToolError
    except ModuleNotFoundError:  # mcp 1.x
        from mcp.server.fastmcp import FastMCP
        from mcp.server.fastmcp.exceptions import ToolError

        return FastMCP, ToolError


def _out_dir(root: Path, tool: str, out_dir: str | None) -> Path:
    p = Path(out_dir).expanduser() if out_dir else root / f"{tool}-{secrets.token_hex(4)}"
    p.mkdir(parents=True, exist_ok=True)
    return p.resolve()


def _load(path: str):
    import medground

    if not path:
        raise MedGroundInputError("give the path of an image")
    return medground.load(Path(path).expanduser())


def build_server(out_root: str | Path | None = None, device: str = "cpu"):
    """The MCP server object (MCPServer on mcp 2.x, FastMCP on 1.x) with medground's tools."""
    from medground.serve import tasks

    Server, ToolError = _server_class()
    root = Path(out_root or os.environ.get("MEDGROUND_MCP_OUT") or "medground_mcp_out").expanduser().resolve()
    server = Server(name="medground", instructions=INSTRUCTIONS)

    def tool(fn):
        @functools.wraps(fn)
        def wrapper(*a, **kw):
            try:
                return fn(*a, **kw)
            except ToolError:
                raise
            except MedGroundInputError as exc:
                raise ToolError(" ".join(str(exc).split())) from None
            except tasks.CapabilityUnavailable as exc:
                raise ToolError(str(exc)) from None
            except Exception as exc:  # one line, never a traceback
                log.error("tool %s failed: %s: %s", fn.__name__, type(exc).__name__, exc)
                raise ToolError(f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:500]) \
                    from None

        return server.tool()(wrapper)

    @tool
    def info(image_path: str) -> dict:
        """Geometry and intensities of an image: shape (x, y, z), spacing (mm), modality, orientation."""
        from medground.serve.tasks import jsonable

        img = _load(image_path)
        s = img.summary()
        s.pop("meta", None)
        return jsonable(s)

    @tool
    def segment(image_path: str, prompts: Optional[list[str]] = None, boxes: Optional[list[list[float]]] = None,
                points: Optional[list[list[float]]] = None, slice: Optional[int] = None,
                labels: Optional[list[str]] = None, out_dir: Optional[str] = None) -> dict:
        """Segment structures named in words (prompts, e.g. ["liver", "left kidney"]) and/or from boxes
        [x0, y0, x1, y1] (2D; on a volume add slice, or give [x0, y0, z0, x1, y1, z1]) or points [x, y(, z)].
        Returns the findings (presence, confidence, box, centroid, area/volume) and the files written."""
        params = tasks.check_params("segment", {k: v for k, v in dict(prompts=prompts, boxes=boxes, points=points,
                                                                       slice=slice, labels=labels).items()
                                                if v is not None})
        img = _load(image_path)
        out = _out_dir(root, "segment", out_dir)
        doc = tasks.run_segment(img, params, out, input_path=image_path, device=device)
        doc["out_dir"] = str(out)
        return doc

    @tool
    def measure(image_path: str, mask_path: str, name: Optional[str] = None) -> dict:
        """Measure a mask (a file written by segment, on the image's own grid): area (mm²) or volume (mL),
        centroid, bounding box, RECIST and maximal diameters, intensity statistics, connected components;
        with name (e.g. "liver") also the reference range flag when one is known."""
        import medground

        img = _load(image_path)
        m = medground.load(Path(mask_path).expanduser(), check=False)
        if m.shape != img.shape:
            raise MedGroundInputError(f"mask shape {list(m.shape)} does not match the image {list(img.shape)}")
        data = m.gray() if m.data.ndim == 4 else m.data
        return tasks.measure_mask(img, data > 0, name=name)

    @tool
    def report(image_path: str, panel: Optional[list[str]] = None, out_dir: Optional[str] = None) -> dict:
        """Write a structured report of the image (findings with measurements; optional panel of structures)."""
        img = _load(image_path)
        out = _out_dir(root, "report", out_dir)
        res = tasks.run_report(img, tasks.check_params("report", {"panel": panel} if panel else {}), out,
                               input_path=image_path, device=device)
        res["out_dir"] = str(out)
        return res

    @tool
    def ask(image_path: str, question: str, out_dir: Optional[str] = None) -> dict:
        """Answer a question about the image in words (e.g. "is there a pleural effusion?")."""
        img = _load(image_path)
        out = _out_dir(root, "ask", out_dir)
        res = tasks.run_ask(img, tasks.check_params("ask", {"question": question}), out, input_path=image_path,
                            device=device)
        res["out_dir"] = str(out)
        return res

    @tool
    def classify(image_path: str, labels: Optional[list[str]] = None) -> dict:
        """Modality, body region and view of the image; with labels, the probability of each label."""
        img = _load(image_path)
        return tasks.run_classify(img, tasks.check_params("classify", {"labels": labels} if labels else {}),
                                  root)

    @tool
    def search(db: str, image_path: Optional[str] = None, text: Optional[str] = None, region: Optional[str] = None,
               k: int = 10) -> dict:
        """Find similar images in a retrieval index (db) by an image, a text, and/or a region."""
        if not (image_path or text or region):
            raise MedGroundInputError("search: give image_path, text or region")
        img = _load(image_path) if image_path else None
        p = tasks.check_params("search", {k2: v for k2, v in dict(db=db, text=text, region=region, k=k).items()
                                          if v is not None})
        return tasks.run_search(img, p, root)

    return server


def run_stdio(out_root: str | Path | None = None, device: str = "cpu") -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # stderr
    server = build_server(out_root, device=device)
    server.run("stdio")
