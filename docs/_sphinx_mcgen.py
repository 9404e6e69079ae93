"""Helpers of ``docs/conf.py`` that sphinx-gallery calls by name (so the configuration stays picklable)."""

from __future__ import annotations

import tempfile
from pathlib import Path


def gallery_argv(gallery_conf, script_vars) -> list[str]:
    """Command-line arguments of every gallery example: its small ``--gallery`` settings, and a
    figure path outside the repository (the examples' default ``--out`` is ``docs/img``)."""
    name = Path(script_vars["src_file"]).stem
    return ["--gallery", "--out", str(Path(tempfile.gettempdir()) / f"mcgen_gallery_{name}.png")]


def reset_torch(gallery_conf, fname) -> None:
    """One torch thread per example (the build runs on small shared CPUs)."""
    import torch

    torch.set_num_threads(1)
