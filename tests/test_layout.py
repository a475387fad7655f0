"""The tree shows the lessons apart from the machinery: gradlab.lessons imports nothing else of
gradlab, and the scripts stay thin."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "src" / "gradlab"


def _gradlab_imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gradlab":
            names += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.split(".")[0] == "gradlab"]
    return names


@pytest.mark.parametrize("path", sorted((PACKAGE / "lessons").glob("*.py")), ids=lambda p: p.name)
def test_the_lessons_import_nothing_else_of_gradlab(path):
    outside = [name for name in _gradlab_imports(path) if not name.startswith("gradlab.lessons")]
    assert outside == [], f"{path.name} imports {outside}: the lessons stand alone"


@pytest.mark.parametrize("package", ["lessons", "run", "show", "checks"])
def test_every_module_lives_in_a_package_named_for_what_it_does(package):
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py"]  # nothing loose at the top
    assert (PACKAGE / package / "__init__.py").is_file()


@pytest.mark.parametrize("script", ["train.py", "eval.py", "predict.py"])
def test_the_scripts_are_thin_wrappers_around_one_library_function(script):
    tree = ast.parse((ROOT / "scripts" / script).read_text())
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert len(functions) == 2  # the job and its @hydra.main
    assert sum(len(f.body) for f in functions) <= 12
