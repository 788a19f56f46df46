"""medground.embed: the shared image-text space contract."""
import numpy as np
import pytest

from medground.embed import EMBED_DIM, embed_images, embed_texts, image_features
from medground.io.image import MedGroundInputError, MedImage


def _pic(seed, colour=False):
    rng = np.random.default_rng(seed)
    a = (rng.random((80, 60, 3) if colour else (80, 60)) * 255).astype(np.uint8)
    return MedImage.from_array(a, layout="rc")


def _vol(seed=0):
    rng = np.random.default_rng(seed)
    return MedImage.from_array(rng.normal(0, 300, (40, 40, 12)).astype(np.float32), affine=np.diag([1.0, 1.0, 3.0, 1.0]))


def test_embed_images_shape_norm_and_determinism():
    ims = [_pic(0), _pic(1, colour=True), _vol()]
    e = embed_images(ims)
    assert e.shape == (3, EMBED_DIM) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(embed_images(ims), e, atol=1e-6)
    assert not np.allclose(e[0], e[1])  # different images, different vectors


def test_image_features_are_raw_and_per_image():
    f = image_features([_pic(0), _pic(2)])
    assert f.ndim == 2 and f.shape[0] == 2 and f.shape[1] >= 16
    assert np.isfinite(f).all()


def test_embed_texts_shared_space():
    t = embed_texts(["a chest x-ray", "a CT scan of the abdomen", "a chest x-ray"])
    assert t.shape == (3, EMBED_DIM)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(t[0], t[2], atol=1e-6)
    sims = embed_images([_pic(0)]) @ t.T  # cosine similarities between the two sides are defined
    assert sims.shape == (1, 3) and np.all(np.abs(sims) <= 1.0 + 1e-5)


def test_empty_and_bad_inputs():
    assert embed_images([]).shape == (0, EMBED_DIM)
    assert embed_texts([]).shape == (0, EMBED_DIM)
    with pytest.raises(MedGroundInputError):
        embed_images([np.zeros((4, 4))])
    with pytest.raises(MedGroundInputError):
        embed_texts(["  "])


@pytest.mark.shared
def test_trained_space_matches_modality_texts(shared_data):
    """With the packaged weights, a chest radiograph is nearer 'X-ray' text than 'dermoscopy' text."""
    from medground.classify.model import load_classifier
    from medground.io import load

    if not load_classifier().trained:
        pytest.skip("no trained classifier weights installed")
    cxr = load(sorted((shared_data / "jsrt-cxr" / "images").glob("*.jpg"))[-1])
    skin = load(sorted((shared_data / "dermoscopy-ph2" / "images").glob("*"))[-1])
    e = embed_images([cxr, skin])
    t = embed_texts(["a X-ray image of the chest", "a dermoscopy image of the skin"])
    s = e @ t.T
    assert s[0, 0] > s[0, 1] and s[1, 1] > s[1, 0]
