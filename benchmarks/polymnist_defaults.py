"""One PolyMNIST fit at ``benchmarks/completion.py``'s ``polymnist`` setting, with a completion grid.

The image-defaults study (issue 11, item 4) runs its ablations with ``benchmarks/completion.py``
(``--param``/``--tag``).  ``completion.py`` does not keep the fitted estimator, so this script
repeats one of its fits (same data, classifiers, capacity rule and evaluation, imported from
``completion.py``) and additionally draws the completion of the other four modalities from one
observed modality for the first ``--rows-shown`` test tuples, as a PNG:

- each row is one test tuple; the first cell is the observed modality (``--observed``), the next
  four are the generated modalities, then the four real ones for reference;
- the row's title gives the true digit and what the per-modality classifiers read in each
  generated modality.

    MCGEN_DATA=/work/shared/data python benchmarks/polymnist_defaults.py --model gmrf \\
        --param cond_weight=1 --png /tmp/gmrf_grid.png --out benchmarks/results/polymnist_defaults_grid.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def _completion_module():
    spec = importlib.util.spec_from_file_location("_completion_bench", HERE / "completion.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def draw_grid(est, split, clfs, observed: int, rows: int, path: str, seed: int) -> dict:
    """Write the completion grid of the first ``rows`` test tuples and return what was read."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mcgen.metrics.classifiers import predict_digits

    ref = [np.asarray(a[:rows]) for a in split.X_test.arrays]
    M = len(ref)
    full = est.predict_missing([ref[observed]], known=[observed], random_state=seed)
    pred = predict_digits(clfs, [np.clip(a, 0, 1) for a in full])
    y = split.y_test[:rows]
    missing = [i for i in range(M) if i != observed]
    fig, axes = plt.subplots(rows, 2 * M - 1, figsize=(1.1 * (2 * M - 1), 1.25 * rows))
    for r in range(rows):
        cells = [(ref[observed][r], f"given m{observed}")]
        cells += [(full[i][r], f"gen m{i}") for i in missing]
        cells += [(ref[i][r], f"real m{i}") for i in missing]
        for c, (img, title) in enumerate(cells):
            ax = axes[r, c]
            ax.imshow(np.clip(np.transpose(img, (1, 2, 0)), 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        axes[r, 0].set_ylabel(f"y={y[r]} read " + "".join(str(pred[r, i]) for i in missing), fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    hits = (pred[:, missing] == y[:, None])
    return {"png": path, "observed": observed, "labels": y.tolist(), "read": pred[:, missing].tolist(),
            "agreement": float(hits.mean())}


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="gmrf")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="estimator parameter (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-completions", type=int, default=10)
    p.add_argument("--observed", type=int, default=0)
    p.add_argument("--rows-shown", type=int, default=8)
    p.add_argument("--png", default="/tmp/polymnist_defaults_grid.png")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="completion.py's tiny polymnist setting (a smoke run)")
    p.add_argument("--data-home", default=None)
    p.add_argument("--also-potential", action="store_true",
                   help="GMRF: also score from_one with inference='potential' at prediction time only "
                        "(the fitted module's mode switched after training)")
    p.add_argument("--out", default=str(HERE / "results" / "polymnist_defaults_grid.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cb = _completion_module()
    overrides = cb.parse_params([f"{args.model}:{item}" for item in (args.param or [])], [args.model])[args.model]
    setting = cb.polymnist_setting(args.quick)
    split = cb.load_split("polymnist", setting, args.seed, args.data_home)
    judge = cb.PolyCoherence(split, setting, args.data_home)
    params = cb.estimator_params(args.model, setting, split.X_train.n_components, args.seed, 1e-3, overrides)
    est = cb.CLASSES[args.model](**params)
    t0 = time.perf_counter()
    est.fit(split.X_train)
    run = {"command": shlex.join(["benchmarks/polymnist_defaults.py", *argv]), "model": args.model,
           "params": params, "fit_seconds": time.perf_counter() - t0, "epochs_run": len(est.history_),
           "final_train_loss": float(est.history_[-1, "train_loss"]), "ceiling": judge.ceiling(),
           "tasks": {}}
    eval_args = argparse.Namespace(n_completions=args.n_completions)
    for task in ("leave_one_out", "from_one"):
        t0 = time.perf_counter()
        run["tasks"][task] = cb.evaluate_task(est, task, split, setting, judge, eval_args, args.seed)
        run["tasks"][task]["eval_seconds"] = time.perf_counter() - t0
    if args.also_potential and args.model == "gmrf" and est.module_.inference != "potential":
        est.module_.inference = "potential"
        t0 = time.perf_counter()
        try:
            run["tasks"]["from_one_potential_at_prediction"] = cb.evaluate_task(est, "from_one", split, setting,
                                                                                judge, eval_args, args.seed)
        except Exception as exc:
            run["tasks"]["from_one_potential_at_prediction"] = {"error": f"{type(exc).__name__}: {exc}"}
        run["tasks"]["from_one_potential_at_prediction"]["eval_seconds"] = time.perf_counter() - t0
        est.module_.inference = params.get("inference", "sample")
    try:  # keep the fitted model, so a grid can be redrawn without refitting
        import joblib

        joblib.dump(est, args.png.rsplit(".", 1)[0] + ".joblib")
    except Exception as exc:  # pragma: no cover - best effort
        print(f"could not save the estimator: {exc}")
    try:
        run["grid"] = draw_grid(est, split, judge.clfs, args.observed, args.rows_shown, args.png, args.seed)
    except Exception as exc:
        run["grid"] = {"error": f"{type(exc).__name__}: {exc}"}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(cb._finite(run), f, indent=1, default=str)
    for task, v in run["tasks"].items():
        if "error" in v:
            print(f"{task}: {v['error']}")
        else:
            print(f"{task}: coherence {v['coherence']:.3f} energy {v['energy_score']:.3f}")
    print(f"fit {run['fit_seconds']:.0f} s; grid {run['grid']}")
    return run


if __name__ == "__main__":
    main()
