"""Imports point down, as docs/architecture.md lays them out: the lower packages never import up."""

import ast
from pathlib import Path

import pytest

import cvtasks

PACKAGE = Path(cvtasks.__file__).parent

#: package → the cvtasks packages and modules its code may import at run time
ALLOWED = {
    "ops": {"ops"},
    "losses": {"losses", "ops"},
    "metrics": {"metrics", "ops"},
    "necks": {"necks", "layers", "ops", "registry"},
    "data": {"data", "ops", "io", "registry"},
    "viz": {"viz", "ops", "data.masks"},
}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(path: Path) -> set[str]:
    """The ``cvtasks.*`` modules ``path`` imports, leaving out ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("cvtasks."))
            elif isinstance(node, ast.ImportFrom) and node.module == "cvtasks":
                found.update(f"cvtasks.{a.name}" for a in node.names)  # from cvtasks import io
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cvtasks."):
                found.add(node.module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit([c for c in children if isinstance(c, ast.stmt | ast.excepthandler)])

    visit(ast.parse(path.read_text()).body)
    return found


def _allowed(module: str, allowed: set[str]) -> bool:
    name = module.removeprefix("cvtasks.")
    return any(name == a or name.startswith(a + ".") for a in allowed)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_lower_packages_import_only_what_lies_below_them(package):
    offending = {
        str(path.relative_to(PACKAGE.parent)): sorted(
            m for m in runtime_imports(path) if not _allowed(m, ALLOWED[package])
        )
        for path in sorted((PACKAGE / package).rglob("*.py"))
    }
    offending = {path: modules for path, modules in offending.items() if modules}
    assert not offending, f"{package}/ imports above its layer: {offending}"


def test_the_check_sees_an_upward_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from cvtasks.ops.boxes import giou_loss\n"
        "if TYPE_CHECKING:\n    from cvtasks.inference import Predictor\n"
        "def f():\n    from cvtasks.tasks.base import TaskModule\n"
        "try:\n    pass\nexcept ImportError:\n    from cvtasks import plugins\n"
    )
    imports = runtime_imports(source)
    assert imports == {"cvtasks.ops.boxes", "cvtasks.tasks.base", "cvtasks.plugins"}
    assert [m for m in sorted(imports) if not _allowed(m, ALLOWED["losses"])] == [
        "cvtasks.plugins",
        "cvtasks.tasks.base",
    ]
