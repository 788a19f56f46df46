import numpy as np
from PIL import Image, ImageDraw

from medground.viz.overlay import _font, draw_label


def _blank_runs(text: str, size: int = 11) -> list[int]:
    img = Image.new("L", (400, 30))
    draw_label(ImageDraw.Draw(img), (2, 2), text, _font(size), fill=255)
    cols = (np.asarray(img) > 0).any(axis=0)
    inked = np.where(cols)[0]
    runs, run = [], 0
    for c in cols[inked[0]: inked[-1] + 1]:
        if c:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    return runs


def test_legend_words_are_separated():
    # the default FreeType font's space is ~2 px wide at small sizes ("rightadrenalgland"); the legend writes
    # words with a gap wider than any gap between the letters of one word
    within = max(_blank_runs("adrenal"))
    gaps = sorted(_blank_runs("right adrenal gland"), reverse=True)[:2]
    assert min(gaps) >= 4 and min(gaps) > within


def test_a_large_picture_is_drawn_at_most_max_size_with_its_mask_in_place(tmp_path):
    from medground.io.image import MedImage
    from medground.viz.overlay import render_overlay

    X, Y = 2000, 1600  # a full-size radiograph
    img = MedImage.from_array(np.tile(np.linspace(0, 1, X, dtype=np.float32)[:, None], (1, Y)), modality="DX")
    m = np.zeros((X, Y, 1), bool)
    m[1200:1600, 400:800] = True  # x 1200-1599, y 400-799
    out = Image.open(render_overlay(img, {"box": m}, tmp_path / "o.png"))
    assert out.size == (1024, round(Y * 1024 / X))
    rgb = np.asarray(out).astype(int)
    red = (rgb[..., 0] - rgb[..., 1] > 40) & (rgb[..., 0] - rgb[..., 2] > 40)  # the first colour is red-ish
    ys, xs = np.where(red[40:])  # below the legend
    f = 1024 / X
    assert abs(xs.min() - 1200 * f) <= 3 and abs(xs.max() - 1599 * f) <= 3
    assert abs(ys.min() + 40 - 400 * f) <= 3 and abs(ys.max() + 40 - 799 * f) <= 3
