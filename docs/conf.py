"""Sphinx configuration of the mcgen documentation.

Build (from the repository root; see README, "Documentation")::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages are generated from the modules' ``__all__`` lists at every build (``docs/api/``,
not tracked), so a name added to or removed from the public API changes the reference without
an edit here.  The gallery runs every script of ``examples/`` with its ``--gallery`` flag
(small settings; see :func:`gallery_argv`).  Nothing is fetched from the network: intersphinx
is off, and cross-references to other projects are written as plain text.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))  # docs/_sphinx_mcgen.py (gallery and autodoc helpers)

os.environ.setdefault("OMP_NUM_THREADS", "1")

import mcgen  # noqa: E402

project = "mcgen"
author = "the mcgen developers"
copyright = "the mcgen developers, MIT licence"  # noqa: A001
release = version = mcgen.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.codeobj.json"]
templates_path = ["_templates"]

# --- checks --------------------------------------------------------------------------------------
# Every cross-reference must resolve: a reference to a name that has no page fails the build
# (with -W).  Other projects' names are not linked (no network, so no intersphinx inventories).
nitpicky = True
nitpick_ignore_regex = [
    # types written in signatures and "Returns" sections of other projects
    (r"py:.*", r"(numpy|np|torch|sklearn|skorch|skimage|ot|pluggy|matplotlib|scipy|collections\.abc|typing|os"
               r"|pathlib)\..*"),
    (r"py:.*", r"PluginManager(\..*)?"),  # pluggy's, named in mcgen.plugins' docstrings
]

# --- autodoc / autosummary / numpydoc --------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # the numpydoc "Parameters" sections carry the types
autodoc_default_options = {"member-order": "groupwise"}
autodoc_inherit_docstrings = True
numpydoc_show_class_members = False  # the class template documents the members itself
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False  # parameter types are free text ("list of (n, d) arrays")
numpydoc_attributes_as_param_list = True

# --- MyST (the Markdown guides) -----------------------------------------------------------------
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

# --- gallery ------------------------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "examples")],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r".*\.py$",  # run every example, not only plot_*.py
    "ignore_pattern": r"[\\/]_[^\\/]*\.py$",  # private helpers (_name.py) are not examples
    "reset_argv": "_sphinx_mcgen.gallery_argv",
    "reset_modules": ("matplotlib", "_sphinx_mcgen.reset_torch"),
    "image_scrapers": ("matplotlib",),
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 0,
    "abort_on_example_error": True,
    "capture_repr": (),
}

# --- HTML ---------------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"mcgen {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_show_sourcelink = False
html_context = {"default_mode": "light"}


# --- API pages from __all__ -----------------------------------------------------------------------
#: The documented modules, in order: (module, title, introduction).
API_MODULES = [
    ("mcgen", "Estimators, data and persistence",
     "The estimators share one API (``fit``, ``sample``, ``predict_missing``, ``transform``, "
     "``score``); see the :doc:`user guide <../guide>`."),
    ("mcgen.metrics", "Metrics", "See :doc:`../metrics`."),
    ("mcgen.scoring", "Scorers", "Scorers for ``GridSearchCV`` and ``cross_val_score`` (higher is better)."),
    ("mcgen.plotting", "Plotting", "Needs the ``[plot]`` extra (matplotlib)."),
    ("mcgen.graph", "Component graphs", "Graphs of components for ``GMRFMultiComponentVAE(graph=...)`` and the "
     "dependency measure of ``dependency_graph()``; see :doc:`../mathematics`."),
    ("mcgen.missing", "Missing components", "Rows that lack components (NaN throughout a component): how they are "
     "found, checked and grouped; see the :doc:`user guide <../guide>`."),
    ("mcgen.datasets", "Datasets",
     "Every dataset is loaded through :func:`mcgen.load_dataset`; these modules hold the loaders and "
     "their helpers.  See :doc:`../datasets`."),
    ("mcgen.plugins", "Plugins", "The registry and the plugin manager; see :doc:`../plugins`."),
    ("mcgen.plugins.hookspecs", "Plugin hooks",
     "The hook contract: a plugin implements these functions (decorated with "
     ":data:`mcgen.plugins.hookimpl`)."),
    ("mcgen.testing", "Testing plugins",
     "Contract checks for plugin authors' own tests; see :doc:`../plugins`, section 5."),
    ("mcgen.reproduce", "Reproducing the paper", "The ``mcgen reproduce`` command; see :doc:`../reproduce`."),
]


def public_names(module) -> list[str]:
    """The public names of ``module``: its ``__all__``, else the functions, classes and upper-case
    constants it defines (not those it imports) without a leading ``_``."""
    names = getattr(module, "__all__", None)
    if names is None:
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = ""
        names = [n for n, o in vars(module).items() if not n.startswith("_") and (
            ((inspect.isfunction(o) or inspect.isclass(o)) and getattr(o, "__module__", None) == module.__name__)
            or (n.isupper() and (f"\n{n} =" in source or f"\n{n}: " in source)))]
    return [n for n in names if not n.startswith("__") and not inspect.ismodule(getattr(module, n, None))]


def _submodules(package) -> list:
    import pkgutil

    if not hasattr(package, "__path__"):
        return []
    return [importlib.import_module(f"{package.__name__}.{m.name}")
            for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")]


def write_api_pages(out: Path) -> dict[str, str]:
    """Write ``api/index.rst`` and one ``api/<module>.rst`` per documented module.

    A name exported by several modules (``mcgen.load_dataset`` and ``mcgen.plugins.load_dataset``)
    is documented under each, as users may meet either.

    Returns ``{qualified name: page}`` of every documented object (used by ``check_site.py``).
    """
    out.mkdir(parents=True, exist_ok=True)
    documented: dict[str, str] = {}
    toc = []
    for modname, title, intro in API_MODULES:
        module = importlib.import_module(modname)
        # a package without public names of its own (mcgen.datasets) is documented by its submodules
        groups = [(module, public_names(module))]
        if not groups[0][1]:
            groups = [(m, public_names(m)) for m in _submodules(module)]
        lines = [title, "=" * len(title), "", f".. automodule:: {modname}", "", intro, ""]
        for mod, names in groups:
            if mod is not module:
                head = f"``{mod.__name__}``"
                lines += [head, "-" * len(head), "", f".. automodule:: {mod.__name__}", ""]
            fresh = []
            for name in names:
                if name.startswith("mcgen_register_") and mod.__name__ != "mcgen.plugins.hookspecs":
                    continue  # a built-in hook implementation; the hook is documented once
                fresh.append(name)
                documented[f"{mod.__name__}.{name}"] = f"api/generated/{mod.__name__}.{name}"
            if fresh:
                lines += [f".. currentmodule:: {mod.__name__}", "", ".. autosummary::", "   :toctree: generated/",
                          "   :nosignatures:", ""] + [f"   {n}" for n in fresh] + [""]
        page = out / f"{modname}.rst"
        text = "\n".join(lines)
        if not page.exists() or page.read_text() != text:  # unchanged pages keep Sphinx's cache valid
            page.write_text(text)
        toc.append(modname)
    index = ["API reference", "=============", "",
             "Every public name of the package, generated from the modules' ``__all__``.", "",
             ".. toctree::", "   :maxdepth: 2", ""] + [f"   {m}" for m in toc] + [""]
    text = "\n".join(index)
    if not (out / "index.rst").exists() or (out / "index.rst").read_text() != text:
        (out / "index.rst").write_text(text)
    return documented


API_OBJECTS = write_api_pages(DOCS / "api")


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document mcgen's own members only: not those inherited from scikit-learn, skorch or torch."""
    if skip:
        return skip
    owner = getattr(obj, "__module__", None) or ""
    if isinstance(obj, (staticmethod, classmethod)):
        owner = getattr(obj.__func__, "__module__", "") or ""
    if owner and not owner.startswith("mcgen"):
        return True
    return None


def _resolve_by_identity(app, env, node, contnode):
    """Resolve a reference to where the object is documented when the docstring names it by its
    defining module (``mcgen.metrics.conditional.known_subsets`` is documented as
    ``mcgen.metrics.known_subsets``; the submodule ``mcgen.metrics.completion`` links to the
    ``mcgen.metrics`` page).  Names in private modules or with a leading underscore are not part
    of the reference: they are shown as code, without a link.  Anything else still fails."""
    from docutils import nodes
    from sphinx.util.nodes import make_refnode

    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if any(part.startswith("_") for part in target.split(".")):
        return nodes.literal(target, contnode.astext())
    if "." not in target and node["refdoc"].startswith("api/generated/"):
        # an unqualified name in the docstring of an object re-exported elsewhere (mcgen.get_scorer's
        # docstring names get_scorer_names of its own module, mcgen.scoring)
        try:
            from sphinx.ext.autosummary import import_by_name

            owner = import_by_name(node["refdoc"].rpartition("/")[2])[1]
            target = f"{inspect.getmodule(owner).__name__}.{target}"
        except BaseException as exc:  # autosummary raises an exception group; the warning stays Sphinx's
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            return None
    if not target.startswith("mcgen."):
        return None
    try:
        from sphinx.ext.autosummary import import_by_name

        obj = import_by_name(target)[1]
    except BaseException as exc:  # not importable: Sphinx reports the broken reference
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return None
    if inspect.ismodule(obj):
        parent = target
        while parent and f"api/{parent}" not in env.all_docs:
            parent = parent.rpartition(".")[0]
        if parent:
            return make_refnode(app.builder, node["refdoc"], f"api/{parent}", f"module-{parent}", contnode)
        return None
    for name in API_OBJECTS:
        modname, _, attr = name.rpartition(".")
        if getattr(importlib.import_module(modname), attr, None) is obj:
            return make_refnode(app.builder, node["refdoc"], f"api/generated/{name}", name, contnode)
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("missing-reference", _resolve_by_identity)
