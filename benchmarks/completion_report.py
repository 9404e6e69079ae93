"""Markdown tables from one or more ``benchmarks/completion.py`` JSON files.

Usage::

    python benchmarks/completion_report.py benchmarks/results/completion_*.json
    python benchmarks/completion_report.py FILES --metrics energy_score r2_mean coherence --tasks leave_one_out

One table per dataset and task; one row per (file tag, model), each cell the mean ± sd over the seeds
found (a model whose fit failed shows the error instead).  Ablation runs written with ``--tag`` are
told apart by their tag.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

DEFAULT_METRICS = ("energy_score", "r2_mean", "r2_single", "coverage_50", "coverage_90", "coherence",
                   "ssim_full_bike", "com_wasserstein")
LOWER_IS_BETTER = {"energy_score", "com_wasserstein"}


def collect(paths: list[str]) -> dict:
    """``{(dataset, task): {(tag, model): {metric: [values over seeds]}}}`` and the errors."""
    table: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for path in paths:
        with open(path) as fh:
            doc = json.load(fh)
        tag = doc.get("tag") or "-"
        for ds, block in doc["datasets"].items():
            for run in block["runs"]:
                key = (tag, run["model"])
                if run.get("error"):
                    table[(ds, "error")][key]["error"].append(run["error"])
                    continue
                for task, res in run.get("tasks", {}).items():
                    for metric, value in res.items():
                        if isinstance(value, (int, float)):
                            table[(ds, task)][key][metric].append(float(value))
    return table


def render(table: dict, metrics: list[str], tasks: list[str] | None = None) -> str:
    """The markdown text of every table."""
    out = []
    for (ds, task), rows in sorted(table.items()):
        if task == "error":
            for (tag, model), cell in rows.items():
                out.append(f"- {ds} / {tag} / {model}: error {cell['error'][0][:200]}")
            continue
        if tasks and task not in tasks:
            continue
        present = [m for m in metrics if any(m in cell for cell in rows.values())]
        signs = ", ".join(f"{m} " + ("(-)" if m in LOWER_IS_BETTER else "(+)") for m in present)
        out.append(f"\n**{ds}, {task}** ({signs})\n")
        out.append("| run | model | seeds | " + " | ".join(present) + " |")
        out.append("|---|---|---|" + "---|" * len(present))
        for (tag, model), cell in sorted(rows.items()):
            n = max(len(v) for v in cell.values())
            vals = []
            for m in present:
                v = np.asarray(cell.get(m, []))
                spread = f" ± {v.std(ddof=1):.3f}" if v.size > 1 else ""
                vals.append("" if v.size == 0 else f"{v.mean():.3f}{spread}")
            out.append(f"| {tag} | {model} | {n} | " + " | ".join(vals) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    parser.add_argument("--tasks", nargs="+", default=None)
    args = parser.parse_args(argv)
    text = render(collect(args.files), args.metrics, args.tasks)
    print(text)
    return text


if __name__ == "__main__":
    main()
