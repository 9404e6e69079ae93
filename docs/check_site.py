"""Check a built documentation site (run after the docs build; CI does).

Fails (exit 1) and says why when:

- a public estimator (a class in ``mcgen.__all__`` that is a scikit-learn estimator) has no
  reference page, or its page misses one of its parameters (``get_params``) or one of the
  methods ``fit``, ``sample``, ``predict_missing``;
- any other name of the documented modules' ``__all__`` has no page;
- a gallery example has no page, or its page shows no figure or no run time;
- the landing page or the guides are missing.

Usage::

    python docs/check_site.py [docs/_build/html]
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# the mcgen of this checkout first, as for `python -m sphinx` run from the repository root
sys.path[:0] = [str(DOCS), str(DOCS.parent)]


def estimator_problems(html: Path) -> list[str]:
    """What is missing from the reference pages of the public estimators."""
    from sklearn.base import BaseEstimator

    import mcgen

    problems = []
    estimators = [n for n in mcgen.__all__ if inspect.isclass(getattr(mcgen, n, None))
                  and issubclass(getattr(mcgen, n), BaseEstimator)]
    if not estimators:
        problems.append("mcgen.__all__ lists no estimator")
    for name in estimators:
        page = html / "api" / "generated" / f"mcgen.{name}.html"
        if not page.exists():
            problems.append(f"estimator {name}: no reference page ({page})")
            continue
        text = page.read_text(encoding="utf-8")
        cls = getattr(mcgen, name)
        if inspect.isabstract(cls):
            continue
        try:
            params = cls().get_params(deep=False)
        except TypeError:  # a base class that needs arguments: its signature
            params = [p for p in inspect.signature(cls).parameters if p != "self"]
        for p in params:
            if not re.search(rf"\b{re.escape(p)}\b", text):
                problems.append(f"estimator {name}: parameter {p!r} not on its page")
        for method in ("fit", "sample", "predict_missing"):
            if hasattr(cls, method) and f'id="mcgen.{name}.{method}"' not in text:
                problems.append(f"estimator {name}: method {method!r} not documented on its page")
    return problems


def api_problems(html: Path) -> list[str]:
    """Names the API generator promised (``conf.write_api_pages``) without a built page."""
    conf = importlib.import_module("conf")
    return [f"{name}: no reference page" for name, page in conf.API_OBJECTS.items()
            if not (html / f"{page}.html").exists()]


def gallery_problems(html: Path) -> list[str]:
    """Every example has a page with a figure and its run time."""
    problems = []
    for script in sorted((DOCS.parent / "examples").glob("*.py")):
        if script.name.startswith("_"):
            continue
        page = html / "auto_examples" / f"{script.stem}.html"
        if not page.exists():
            problems.append(f"example {script.name}: no gallery page")
            continue
        text = page.read_text(encoding="utf-8")
        if not re.search(r'<img[^>]+src="[^"]*_images/sphx_glr_[^"]+\.png"', text):
            problems.append(f"example {script.name}: its gallery page shows no figure")
        if "Total running time of the script" not in text:
            problems.append(f"example {script.name}: its gallery page states no run time")
    return problems


def page_problems(html: Path) -> list[str]:
    """The landing page, the reproduce page and every Markdown guide were built."""
    pages = ["index", "reproduce", "api/index"] + [p.stem for p in DOCS.glob("*.md") if p.name != "README.md"]
    return [f"page {p}.html missing" for p in pages if not (html / f"{p}.html").exists()]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    html = Path(argv[0] if argv else DOCS / "_build" / "html")
    if not (html / "index.html").exists():
        print(f"check_site: no built site in {html} (build it first; see README)", file=sys.stderr)
        return 1
    problems = page_problems(html) + estimator_problems(html) + api_problems(html) + gallery_problems(html)
    for p in problems:
        print(f"check_site: {p}", file=sys.stderr)
    if problems:
        return 1
    import mcgen

    n_api = len(importlib.import_module("conf").API_OBJECTS)
    n_est = sum(1 for n in mcgen.__all__ if inspect.isclass(getattr(mcgen, n, None)))
    n_examples = len([p for p in (DOCS.parent / "examples").glob("*.py") if not p.name.startswith("_")])
    print(f"check_site: {html}: {n_api} reference pages ({n_est} public classes of mcgen), {n_examples} gallery "
          "pages with figure and run time: all present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
