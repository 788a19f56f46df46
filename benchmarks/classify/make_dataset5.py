"""Recipe 5 training set (benchmarks/results/classify.md): cache/classify/dataset3.npz (built by
`python -m medground.classify.data` before `src_stored_slices` existed) + the BTCV/CHAOS slice files in their
stored orientation -> cache/classify/dataset5.npz. Run from the repository root."""
import numpy as np, json
from pathlib import Path
from medground.classify.data import Sink, src_stored_slices
T = Path('../shared/data')
sink = Sink()
src_stored_slices(sink, T / "btcv-ct", "CT", "abdomen", "btcv-ct", 4)
src_stored_slices(sink, T / "chaos-mr", "MRI", "abdomen", "chaos-mr", 10)
sink.save('cache/classify/stored_rows.npz')
a = np.load('cache/classify/dataset3.npz'); b = np.load('cache/classify/stored_rows.npz')
out = {k: np.concatenate([a[k], b[k]]) for k in a.files}
np.savez_compressed('cache/classify/dataset5.npz', **out)
print(len(a['thumbs']), '+', len(b['thumbs']))
