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
