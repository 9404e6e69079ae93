"""The import layering of ``mcgen/`` (docs/design.md, "Layers"): what each part may import, no
import cycle, models that never reach the plugin registry, persistence that never reaches into
estimator internals.  Imports are read from the source (module level and inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import mcgen

MCGEN_DIR = Path(mcgen.__file__).parent

#: What each part of the package may import (besides itself), by module-name prefix; the longest
#: matching prefix rules.  The same table is in docs/design.md.
ALLOWED: dict[str, tuple[str, ...]] = {
    "mcgen.version": (),
    "mcgen.exceptions": (),
    "mcgen.distributions": (),
    "mcgen.gaussian": (),
    "mcgen.gaussian_mixture": ("mcgen.gaussian",),
    "mcgen.graph": (),
    "mcgen.gaussian_graph": ("mcgen.gaussian", "mcgen.graph"),
    "mcgen.likelihoods": ("mcgen.distributions",),
    "mcgen.standardizer": (),
    "mcgen.missing": (),
    "mcgen.components": ("mcgen.exceptions",),
    "mcgen.data_files": ("mcgen.exceptions",),
    "mcgen.models": ("mcgen.distributions", "mcgen.gaussian", "mcgen.gaussian_mixture", "mcgen.gaussian_graph",
                     "mcgen.graph", "mcgen.likelihoods", "mcgen.exceptions"),
    "mcgen.plugins": ("mcgen.exceptions", "mcgen.version"),
    "mcgen.persistence": ("mcgen.exceptions", "mcgen.version"),
    "mcgen.training": ("mcgen.persistence", "mcgen.exceptions"),
    "mcgen.metrics": ("mcgen.components", "mcgen.data_files", "mcgen.plugins", "mcgen.exceptions"),
    "mcgen.architectures": ("mcgen.plugins.hookspecs", "mcgen.exceptions"),
    "mcgen.datasets": ("mcgen.components", "mcgen.data_files", "mcgen.plugins.hookspecs", "mcgen.metrics.classifiers",
                       "mcgen.exceptions"),
    "mcgen.base": ("mcgen.components", "mcgen.exceptions", "mcgen.likelihoods", "mcgen.missing", "mcgen.models",
                   "mcgen.persistence", "mcgen.plugins", "mcgen.standardizer", "mcgen.training"),
    "mcgen.estimators": ("mcgen.base", "mcgen.models", "mcgen.training"),
    "mcgen.baselines": ("mcgen.estimators", "mcgen.training"),
    "mcgen.scoring": ("mcgen.metrics", "mcgen.plugins", "mcgen.components", "mcgen.exceptions"),
    # the public namespace and the applications on top may import anything
    "mcgen": ("mcgen",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(MCGEN_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in MCGEN_DIR.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The mcgen modules ``name`` imports: ``from pkg import sub`` counts as ``pkg.sub`` when that
    is a module, else as ``pkg``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "mcgen")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "mcgen":
                continue
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names)
    found.discard(name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _rule(name: str) -> str:
    return max((p for p in ALLOWED if name == p or name.startswith(p + ".")), key=len)


def _within(target: str, prefixes) -> bool:
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def test_every_module_imports_only_what_its_layer_allows():
    offenders = {}
    for name, targets in GRAPH.items():
        rule = _rule(name)
        bad = sorted(t for t in targets if not _within(t, (rule, *ALLOWED[rule])))
        if bad:
            offenders[name] = bad
    assert offenders == {}


def test_models_never_import_the_plugin_registry():
    offenders = {n: sorted(t for t in ts if t.startswith("mcgen.plugins")) for n, ts in GRAPH.items()
                 if n.startswith("mcgen.models")}
    assert not any(offenders.values()), offenders


def test_no_import_cycle_in_mcgen():
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(name):
        state[name] = 1
        path.append(name)
        for target in sorted(GRAPH.get(name, ())):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target)
        path.pop()
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_persistence_imports_no_estimator_and_nothing_private():
    targets = GRAPH["mcgen.persistence"]
    assert not any(t.startswith(("mcgen.base", "mcgen.estimators", "mcgen.training", "mcgen.models")) for t in targets)
    tree = ast.parse(MODULES["mcgen.persistence"].read_text())
    private = [f"{node.module}.{a.name}" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
    private += [t for t in targets if any(part.startswith("_") for part in t.split("."))]
    assert private == []


def test_the_layering_table_finds_real_violations(tmp_path):
    """The checks above are not vacuous: a planted models -> plugins import and a cycle are seen."""
    assert _rule("mcgen.models.gmrf") == "mcgen.models"
    assert not _within("mcgen.plugins", (_rule("mcgen.models.gmrf"), *ALLOWED["mcgen.models"]))
    assert _within("mcgen.models.base", (_rule("mcgen.base"), *ALLOWED["mcgen.base"]))
    assert not _within("mcgen.base", (_rule("mcgen.persistence"), *ALLOWED["mcgen.persistence"]))
    assert "mcgen.persistence" in GRAPH["mcgen.training"] and "mcgen.models.base" in GRAPH["mcgen.base"]
