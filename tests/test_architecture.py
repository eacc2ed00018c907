# SPDX-License-Identifier: GPL-2.0-or-later
"""The floor plan holds (docs/architecture.md): which package may import which, read from
every module's imports (at the top and inside functions; `if TYPE_CHECKING:` ones aside),
and no import cycle in qhook. An import that crosses the trust boundary the wrong way
fails here, naming the module and the import."""

import ast
import re
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

from tools import REPO

PACKAGE = REPO / "qhook"

# What each part may import of qhook (a part is a module's package, or the module itself
# for the top-level modules). The neutral parts import neither side.
ALLOWED: Dict[str, Set[str]] = {
    "qhook": set(),
    "qhook.errors": {"qhook"},
    "qhook.plugins": {"qhook", "qhook.errors", "qhook.plugins", "qhook.vocabulary"},
    "qhook.vocabulary": {"qhook", "qhook.errors", "qhook.plugins", "qhook.vocabulary"},
    "qhook.vdsm": {"qhook", "qhook.errors", "qhook.plugins", "qhook.vocabulary", "qhook.vdsm"},
    "qhook.host": {
        "qhook",
        "qhook.errors",
        "qhook.plugins",
        "qhook.vocabulary",
        "qhook.host",
        "qhook.quantum",  # ports on demand: root-side work that uses the API client
    },
    "qhook.quantum": {"qhook", "qhook.errors", "qhook.vocabulary", "qhook.quantum"},
    "qhook.engine": {
        "qhook",
        "qhook.errors",
        "qhook.plugins",
        "qhook.vocabulary",
        "qhook.quantum",
        "qhook.engine",
    },
    "qhook.lab": {
        "qhook",
        "qhook.errors",
        "qhook.plugins",
        "qhook.vocabulary",
        "qhook.vdsm",
        "qhook.install",
        "qhook.lab",
    },
    "qhook.install": {"qhook"},
    "qhook.cli": {
        "qhook",
        "qhook.errors",
        "qhook.plugins",
        "qhook.vocabulary",
        "qhook.vdsm",
        "qhook.host",
        "qhook.engine",
        "qhook.install",
        "qhook.lab",
    },
}
# The one way from the hooks to root code: the helper's entry point, which the hooks run
# in-process when they already are root (else through sudo).
CROSSINGS = {("qhook.vdsm.helper_client", "qhook.host.helper")}
# Only the qhook command imports the scaffolding, and only inside the commands using it.
LAB_USERS = {"qhook.cli"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str:
    if module in ALLOWED:
        return module
    top = ".".join(module.split(".")[:2])
    return top if top in ALLOWED else module


def _target(name: str) -> str:
    """The module an import names: the deepest that is a module of ours."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _under_type_checking(node: ast.AST, parents: Dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(module: str) -> List[Tuple[str, int, bool]]:
    """(the module of ours imported, the line, whether at the module's top level)."""
    tree = ast.parse(MODULES[module].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if _under_type_checking(node, parents):
            continue
        top_level = parents.get(node) is tree
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "qhook" or name.startswith("qhook."):
                found.append((_target(name), node.lineno, top_level))
    return found


def test_every_module_belongs_to_a_part_of_the_plan():
    assert {m: _part(m) for m in MODULES if _part(m) not in ALLOWED} == {}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_what_its_part_may(module):
    part = _part(module)
    wrong = [
        f"{module}:{line} imports {target}"
        for target, line, _ in imports_of(module)
        if _part(target) not in ALLOWED[part] | {part} and (module, target) not in CROSSINGS
    ]
    assert wrong == []


def test_the_hooks_reach_root_code_only_through_the_helpers_entry_point():
    crossings = {
        (module, target)
        for module in MODULES
        if _part(module) == "qhook.vdsm"
        for target, _, _ in imports_of(module)
        if _part(target) == "qhook.host"
    }
    assert crossings <= CROSSINGS


def test_only_the_command_uses_the_scaffolding_and_only_inside_its_commands():
    users = {
        (module, line, top)
        for module in MODULES
        if _part(module) != "qhook.lab"
        for target, line, top in imports_of(module)
        if _part(target) == "qhook.lab"
    }
    assert {module for module, _, _ in users} <= LAB_USERS
    assert [f"{m}:{line}" for m, line, top in users if top] == []


def test_qhook_has_no_import_cycle():
    graph = {m: {t for t, _, _ in imports_of(m) if t != m} for m in MODULES}
    cycles = []
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph.get(module, ()):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def test_no_module_outside_the_plugins_branches_on_a_plugin():
    """What a plugin does is asked of it (qhook.plugins.of); nobody else names one."""
    member = re.compile(r"\bPlugin\.[A-Z]")
    named = [
        f"{module}:{line}: {text.strip()}"
        for module, path in MODULES.items()
        if _part(module) != "qhook.plugins"
        for line, text in enumerate(path.read_text().splitlines(), 1)
        if member.search(text)
    ]
    assert named == []
