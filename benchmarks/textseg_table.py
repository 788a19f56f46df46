"""One Markdown table from several bench_textseg.py runs (their .json files) of the same cases.

    python benchmarks/textseg_table.py "v2 text=results/textseg_test_v2.json:text" \
        "v1 text=results/textseg_test_v1.json:text" "box=results/textseg_test_v1.json:box"
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv=None):
    cols = []
    for spec in (argv or sys.argv[1:]):
        label, _, rest = spec.partition("=")
        path, _, mode = rest.rpartition(":")
        cols.append((label, json.loads(Path(path).read_text()), mode))
    names = list(dict.fromkeys(n for _, raw, _ in cols for n in raw))
    head = "| dataset | class | cases | " + " | ".join(c[0] for c in cols) + " |"
    lines = [head, "|---|---|---:|" + "---:|" * len(cols)]
    means = []
    for n in names:
        classes = sorted({c for _, raw, m in cols for c in raw.get(n, {}).get(m, {}).get("per_class", {})})
        cases = next((raw[n][m]["n_cases"] for _, raw, m in cols if m in raw.get(n, {})), "")
        for c in classes:
            vals = [raw.get(n, {}).get(m, {}).get("per_class", {}).get(c) for _, raw, m in cols]
            lines.append(f"| {n} | {c} | {cases} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in vals) + " |")
        ov = [raw.get(n, {}).get(m, {}).get("overall") for _, raw, m in cols]
        means.append(f"| {n} | **mean** | {cases} | " + " | ".join("–" if v is None else f"**{v:.3f}**" for v in ov) + " |")
    lines += means
    lines += ["", "Slice-level presence on volumes (specificity = absent slices reported absent; sensitivity):", "",
              "| dataset | " + " | ".join(f"{c[0]} spec / sens" for c in cols if c[2] == "text") + " |",
              "|---|" + "---|" * sum(1 for c in cols if c[2] == "text")]
    for n in names:
        row = []
        for _, raw, m in cols:
            if m != "text":
                continue
            sp = raw.get(n, {}).get(m, {}).get("slice_presence") or {}
            if not sum(sp.values() if sp else [0]):
                row.append("–")
                continue
            spec = sp["TN"] / max(1, sp["TN"] + sp["FP"])
            sens = sp["TP"] / max(1, sp["TP"] + sp["FN"])
            row.append(f"{spec:.3f} / {sens:.3f}")
        if any(r != "–" for r in row):
            lines.append(f"| {n} | " + " | ".join(row) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
