"""medground.train.orientation: training on thumbnails, the per-dataset evaluation, installing into a head."""
import json
import shutil

import numpy as np
import torch

from medground.models.orientation import INVERSE, NAMES, OrientationNet, dihedral
from medground.train import orientation as O
from medground.train.cache import thumbnail


def _synthetic(tmp_path, n_train=320, n_val=48):
    """An asymmetric 'anatomy' (a big bright blob upper left, a small one lower right, a bar at the bottom)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:96, :96]
    pics = []
    for _ in range(n_train + n_val):
        c1 = (28 + rng.integers(-5, 6), 30 + rng.integers(-5, 6))
        c2 = (66 + rng.integers(-5, 6), 70 + rng.integers(-5, 6))
        p = 0.2 + 0.6 * (((yy - c1[0]) ** 2 + (xx - c1[1]) ** 2) < 18 ** 2) \
            + 0.4 * (((yy - c2[0]) ** 2 + (xx - c2[1]) ** 2) < 8 ** 2) + 0.3 * (yy > 84)
        pics.append(p + rng.normal(0, 0.03, p.shape))
    t96 = np.stack([thumbnail(p, 96) for p in pics])
    t64 = np.stack([thumbnail(p) for p in pics])
    rows = [{"dataset": "synth", "split": "train" if i < n_train else "val", "case": str(i), "z": 0}
            for i in range(len(pics))]
    np.save(tmp_path / "thumbs96.npy", t96)
    np.save(tmp_path / "thumbs64.npy", t64)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    return t64, rows


def test_train_learns_and_evaluation_counts(tmp_path):
    t64, rows = _synthetic(tmp_path)
    info = O.train(tmp_path, tmp_path / "o.pt", epochs=6, batch=32, width=8, lr=3e-3, log=lambda m: None)
    obj = torch.load(tmp_path / "o.pt", weights_only=False)
    net = OrientationNet(**info["config"])
    net.load_state_dict(obj["state"])
    res = O.evaluate_net(net.eval(), t64, rows, "val")
    assert res["synth"]["slices"] == 48 and res["all"]["8way"] > 0.5  # chance: 0.125
    assert info["train_slices"] == {"synth": 320}


def test_evaluation_of_a_net_that_always_says_identity():
    class Always(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 8)
            out[:, 0] = 10.0
            return out

    t64 = np.zeros((6, 64, 64), np.uint8)
    rows = [{"dataset": ds, "split": "val", "case": "c", "z": 0} for ds in ["jsrt-cxr"] * 3 + ["btcv-ct"] * 3]
    res = O.evaluate_net(Always(), t64, rows, "val")
    assert res["jsrt-cxr"]["8way"] == 1 / 8 and res["jsrt-cxr"]["as_stored"] == 1.0  # stored upright
    assert res["btcv-ct"]["as_stored"] == 0.0  # its slices are stored turned (rot90 brings them to canonical)
    assert INVERSE[NAMES.index(O.STORED_AS["btcv-ct"])] != 0


def test_install_into_a_head(tmp_path):
    from medground.models.grounding import DEFAULT_WEIGHTS, load_grounding

    net = OrientationNet(width=8).eval()
    torch.save({"state": net.state_dict(), "info": {"config": {"width": 8}, "val_8way": 0.5, "epochs": 1}},
               tmp_path / "o.pt")
    head = tmp_path / "grounding.pt"
    shutil.copy(DEFAULT_WEIGHTS, head)
    O.install(tmp_path / "o.pt", head, "test")
    g = load_grounding(head)
    x = np.random.default_rng(1).integers(0, 255, (64, 64)).astype(np.uint8)
    assert np.allclose(g.orientation.predict(x), net.predict(x), atol=1e-6)
    assert json.loads(head.with_suffix(".card.json").read_text())["orientation"]["note"] == "test"
    assert dihedral(x, 0).shape == x.shape
