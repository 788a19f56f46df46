"""The web viewer in a real headless browser (Debian's chromium driven by Playwright, no browser download)
against a real ``python -m medground serve`` process on loopback.

The main test uploads a chest radiograph, types "left lung", waits for the job and checks on a screenshot
that the mask is drawn in the colour of its legend entry inside the reference left-lung region (and not
before, and not over the right lung), that clicking the finding moves the crosshair to its centroid, and
that the page fetched nothing but the server. ``MEDGROUND_UPDATE_DOCS=1`` also writes
``docs/images/viewer.png``. Skipped when chromium or Playwright is missing.
"""
from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MEDGROUND_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--enable-unsafe-swiftshader"]  # WebGL2 on the CPU (SwiftShader) for NiiVue
TOKEN = "browser-test-token"
VIEWPORT = {"width": 1400, "height": 820}
JOB_TIMEOUT_MS = 300_000


# --------------------------------------------------------------------------- server and browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `medground serve` on a free loopback port, with a token and a temporary data dir."""
    tmp = tmp_path_factory.mktemp("viewer-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MEDGROUND_TOKEN", None)
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "medground", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(tmp / "data"), "--threads", "1", "--token", TOKEN],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    import httpx

    t0 = time.time()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(url + "/api/health", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > 120:
                raise RuntimeError(f"server did not start: {(tmp / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Page:
    """A viewer page with its console errors and every URL it requested."""

    def __init__(self, browser, url: str):
        self.base = url.split("?")[0].rstrip("/")
        self.page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(url)
        try:
            self.page.wait_for_function("window.medground && document.body.dataset.state !== 'starting' && "
                                        "document.body.dataset.state !== 'busy'", timeout=60_000)
        except sync_api.TimeoutError:
            raise AssertionError(f"the page did not start: status {self.status()!r}, errors {self.errors}, "
                                 f"console {self.console[-10:]}") from None

    def status(self) -> str:
        return self.page.inner_text("#status")

    def state(self) -> str:
        return self.page.evaluate("document.body.dataset.state")

    def act(self, fn, timeout: float = JOB_TIMEOUT_MS) -> str:
        """Do something that starts a piece of work (upload, segment...) and wait until it has finished."""
        n = self.page.evaluate("window.medground.state.completed")
        fn()
        self.page.wait_for_function(f"window.medground.state.completed > {n}", timeout=timeout)
        self.page.wait_for_timeout(300)  # let NiiVue draw its last frame
        return self.status()

    def upload(self, path: Path) -> str:
        self.page.set_input_files("#file-input", str(path))
        return self.act(lambda: self.page.click("#upload-btn"))

    def segment(self, prompt: str) -> str:
        self.page.fill("#prompt-input", prompt)
        return self.act(lambda: self.page.click("#segment-btn"))

    def screenshot(self, path: Path | None = None) -> np.ndarray:
        from io import BytesIO

        from PIL import Image

        png = self.page.screenshot(path=str(path) if path else None)
        return np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(np.int32)

    def voxel_to_page(self, x: float, y: float, z: float = 0) -> tuple[float, float]:
        xy = self.page.evaluate(f"window.medground.viewer.voxelToPage({x}, {y}, {z})")
        assert xy is not None, f"voxel {(x, y, z)} is not on screen"
        return float(xy[0]), float(xy[1])

    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not (u.startswith(self.base + "/") or u.startswith(("data:", "blob:")))]

    def close(self):
        self.page.close()


@pytest.fixture
def open_page(browser, server):
    pages: list[Page] = []

    def make(token: str | None = TOKEN, query: str = "") -> Page:
        q = "&".join(x for x in (f"token={token}" if token else "", query) if x)
        p = Page(browser, f"{server}/" + (f"?{q}" if q else ""))
        pages.append(p)
        return p

    yield make
    for p in pages:
        p.close()


# --------------------------------------------------------------------------- pictures
def _chest_radiograph() -> tuple[Path, dict[str, np.ndarray]]:
    """A real chest X-ray and its reference lung masks ({} when none): JSRT from ../shared/data when
    present, else the radiograph that ships with pydicom-data."""
    shared = Path(os.environ.get("MEDGROUND_SHARED_DATA") or REPO.parent / "shared" / "data")
    jsrt = shared / "jsrt-cxr"
    img = jsrt / "images" / "JPCLN001.jpg"
    if img.is_file():
        from PIL import Image

        refs = {}
        for organ in ("left_lung", "right_lung"):
            m = jsrt / "masks" / organ / "JPCLN001.png"
            if m.is_file():
                refs[organ] = np.asarray(Image.open(m)).T > 0  # [x, y] like MedImage.data
        return img, refs
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("RG1_UNCR.dcm")
    except Exception:  # pragma: no cover - pydicom-data is in the examples extra
        path = None
    if not path:
        pytest.skip("no chest radiograph available (../shared/data/jsrt-cxr or pydicom-data)")
    return Path(path), {}


def _colour_mask(shot: np.ndarray, rgb: tuple[int, int, int], margin: int = 35) -> np.ndarray:
    """Pixels tinted with a legend colour: its strongest channel stands out of a grey image by `margin`."""
    c = int(np.argmax(rgb))
    others = [i for i in range(3) if i != c]
    return shot[..., c] - np.maximum(shot[..., others[0]], shot[..., others[1]]) > margin


def _sample(page: Page, shot: np.ndarray, mask_xy: np.ndarray, step: int = 3) -> np.ndarray:
    """Screenshot values at the screen positions of the pixels of an [x, y] image mask."""
    nx, ny = mask_xy.shape
    (u0, v0), (u1, v1) = page.voxel_to_page(0, 0), page.voxel_to_page(nx - 1, ny - 1)
    xs, ys = np.nonzero(mask_xy[::step, ::step])
    xs, ys = xs * step, ys * step
    u = np.round(u0 + xs * (u1 - u0) / (nx - 1)).astype(int)
    v = np.round(v0 + ys * (v1 - v0) / (ny - 1)).astype(int)
    ok = (u >= 0) & (v >= 0) & (u < shot.shape[1]) & (v < shot.shape[0])
    return shot[v[ok], u[ok]]


def _legend_rgb(page: Page, name: str) -> tuple[int, int, int]:
    css = page.page.evaluate(
        """(name) => { const it = [...document.querySelectorAll('#legend .legend-item')].find(e => e.textContent.trim() === name);
                      return it ? getComputedStyle(it.querySelector('.swatch')).backgroundColor : null }""", name)
    assert css, f"no legend entry for {name!r}"
    return tuple(int(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3])


def _crosshair_at(page: Page, shot: np.ndarray) -> tuple[int, int]:
    """Screen column and row of the crosshair (cyan lines) inside the image area."""
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    cyan = (b > 150) & (g > 110) & (b - r > 80)
    box = page.page.evaluate("(() => { const r = document.querySelector('#gl').getBoundingClientRect(); "
                             "return [r.left, r.top, r.right, r.bottom] })()")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    sub = cyan[y0:y1, x0:x1]
    return x0 + int(np.argmax(sub.sum(0))), y0 + int(np.argmax(sub.sum(1)))


# --------------------------------------------------------------------------- tests
def test_upload_prompt_and_see_the_mask(open_page):
    from scipy import ndimage

    image, refs = _chest_radiograph()
    page = open_page()
    assert page.status().startswith("ready"), page.status()

    status = page.upload(image)
    assert page.state() == "idle", status
    assert "2D" in page.page.inner_text("#study-info")
    nx, ny = page.page.evaluate("window.medground.state.study.shape")[:2]
    before = page.screenshot()

    status = page.segment("left lung")
    assert page.state() == "idle", status
    assert "left lung" in status
    findings = page.page.evaluate("window.medground.state.findings")
    left = next(f for f in findings if f["name"] == "left lung")
    assert left["present"], findings
    assert page.page.locator("#findings li.finding.present", has_text="left lung").count() == 1
    rgb = _legend_rgb(page, "left lung")
    after = page.screenshot()

    tinted_before, tinted_after = _colour_mask(before, rgb), _colour_mask(after, rgb)
    if refs:  # JSRT: the reference masks say where the left and the right lung are
        core = {k: ndimage.binary_erosion(m, iterations=10) for k, m in refs.items()}
        assert core["left_lung"].shape == (nx, ny)
        in_left_before = _sample(page, tinted_before, core["left_lung"]).mean()
        in_left = _sample(page, tinted_after, core["left_lung"]).mean()
        in_right = _sample(page, tinted_after, core["right_lung"]).mean()
        assert in_left_before < 0.02, in_left_before
        assert in_left > 0.6, (in_left, in_right)
        assert in_right < 0.05, (in_left, in_right)
    else:  # pydicom-data radiograph (PA): patient's left lung is on the image's right half
        half = np.zeros((nx, ny), bool)
        right_half, left_half = half.copy(), half.copy()
        right_half[nx // 2 + nx // 10:, ny // 5: 4 * ny // 5] = True
        left_half[: nx // 2 - nx // 10, ny // 5: 4 * ny // 5] = True
        assert _sample(page, tinted_before, right_half).mean() < 0.02
        assert _sample(page, tinted_after, right_half).mean() > 0.2
        assert _sample(page, tinted_after, right_half).mean() > 4 * _sample(page, tinted_after, left_half).mean()

    # click the finding: the crosshair goes to its centroid
    page.page.evaluate("window.medground.viewer.center()")
    page.page.wait_for_timeout(200)
    cx, cy = left.get("centroid_pixel") or left["centroid_voxel"][:2]
    u_c, v_c = page.voxel_to_page(cx, cy)
    u0, v0 = _crosshair_at(page, page.screenshot())
    assert abs(u0 - u_c) > 10 or abs(v0 - v_c) > 10  # not there yet
    page.page.locator("#findings li.finding", has_text="left lung").click()
    page.page.wait_for_timeout(300)
    u1, v1 = _crosshair_at(page, page.screenshot())
    assert abs(u1 - u_c) <= 3 and abs(v1 - v_c) <= 3, ((u1, v1), (u_c, v_c))
    where = page.page.inner_text("#location")
    assert f"x {round(cx)}, y {round(cy)}" in where and "left lung" in where, where

    assert not page.errors, page.errors
    assert not page.external_requests(), page.external_requests()

    if os.environ.get("MEDGROUND_UPDATE_DOCS") == "1":
        status = page.segment("right lung, left lung, heart")
        assert page.state() == "idle", status
        status = page.act(lambda: page.page.click("#report-btn"))  # the report beside the findings
        page.page.locator("#findings li.finding", has_text="heart").click()
        page.page.wait_for_timeout(300)
        out = REPO / "docs" / "images" / "viewer.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(out)


def test_errors_are_shown(open_page, tmp_path):
    from PIL import Image

    pic = tmp_path / "small.png"
    Image.fromarray((np.indices((48, 64)).sum(0) * 2).astype(np.uint8)).save(pic)

    page = open_page(token=None)  # no token: the API refuses, the page says why
    status = page.upload(pic)
    assert page.state() == "error" and "token" in status.lower(), status
    assert page.page.locator("#status.error").count() == 1

    page = open_page()
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not an image\n")
    status = page.upload(bad)
    assert page.state() == "error" and "upload failed" in status, status
    assert page.page.is_disabled("#segment-btn")  # no study yet

    status = page.upload(pic)
    assert page.state() == "idle", status
    page.page.fill("#prompt-input", " , ")
    page.page.click("#segment-btn")
    assert page.state() == "error" and "segment" in page.status(), page.status()
    status = page.segment("no such organ xyz")
    assert page.state() == "error" and "failed" in status, status
    assert not page.errors, page.errors


def test_volume_planes_and_window(open_page, tmp_path):
    import nibabel as nib

    # a small CT-like volume in Hounsfield units: air around a water body with a bright "bone" rod
    x, y, z = np.mgrid[:48, :40, :24]
    hu = np.full((48, 40, 24), -1000, np.int16)
    hu[((x - 24) ** 2 + (y - 20) ** 2) < 17 ** 2] = 30
    hu[((x - 24) ** 2 + (y - 27) ** 2) < 4 ** 2] = 900
    path = tmp_path / "ct.nii.gz"
    affine = np.diag([-2.0, -2.0, 4.0, 1.0])  # stored in LPS order: NiiVue's RAS voxels differ from ours
    affine[:3, 3] = [40.0, 30.0, -50.0]
    nib.save(nib.Nifti1Image(hu, affine), path)

    page = open_page()
    # files dropped on the image go to the server as one study
    js = """([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))
        const dt = new DataTransfer()
        dt.items.add(new File([bytes], name))
        document.querySelector('#gl').dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }))
    }"""
    status = page.act(lambda: page.page.evaluate(js, [base64.b64encode(path.read_bytes()).decode(), path.name]))
    assert page.state() == "idle", status
    assert "3D" in page.page.inner_text("#study-info")
    tiles = lambda: page.page.evaluate("window.medground.viewer.tiles().map(t => t.axCorSag)")  # noqa: E731
    assert sorted(tiles()) == [0, 1, 2]  # the three planes
    for name, plane in (("Axial", 0), ("Coronal", 1), ("Sagittal", 2)):
        page.page.click(f"#view-buttons button:text-is('{name}')")
        page.page.wait_for_timeout(100)
        assert tiles() == [plane], name
    page.page.click("#view-buttons button:text-is('3 planes')")
    page.page.evaluate("window.medground.viewer.jumpToVoxel(10, 5, 3)")
    assert page.page.inner_text("#location").startswith("voxel 10, 5, 3 = -1000"), page.page.inner_text("#location")
    page.page.evaluate("window.medground.viewer.jumpToVoxel(24, 27, 20)")  # the bright rod
    assert page.page.inner_text("#location").startswith("voxel 24, 27, 20 = 900"), page.page.inner_text("#location")
    page.page.click("#view-buttons button:text-is('Axial')")
    page.page.wait_for_timeout(200)

    page.page.evaluate("window.medground.viewer.jumpToVoxel(24, 20, 12)")
    cx, cy = page.voxel_to_page(16, 14, 12)  # inside the water body, off the crosshair
    def grey():  # noqa: E306
        return float(page.screenshot()[int(cy) - 2:int(cy) + 3, int(cx) - 2:int(cx) + 3].mean())

    page.page.fill("#wl-window", "400")
    page.page.fill("#wl-level", "40")
    page.page.click("#wl-form button")
    page.page.wait_for_timeout(200)
    soft = grey()
    page.page.fill("#wl-window", "1500")
    page.page.fill("#wl-level", "-600")
    page.page.click("#wl-form button")
    page.page.wait_for_timeout(200)
    wl = page.page.evaluate("window.medground.viewer.windowLevel()")
    assert abs(wl["window"] - 1500) < 1e-3 and abs(wl["level"] + 600) < 1e-3, wl
    lung = grey()
    # water (30 HU) is mid-grey in a soft-tissue window and near white in a lung window
    assert 60 < soft < 200 and lung > 215, (soft, lung)
    assert not page.errors, page.errors
    assert not page.external_requests(), page.external_requests()
