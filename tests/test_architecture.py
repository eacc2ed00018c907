# SPDX-License-Identifier: GPL-2.0-or-later
"""The floor plan holds (docs/architecture.md): which package may import which, read from
every module's imports (at the top and inside functions; `if TYPE_CHECKING:` ones aside),
and no import cycle in qhook. An import that crosses the trust boundary the wrong way
fails here, naming the module and the import."""

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest
from domains import new_id, quantum_vm, seed_properties
from lxml import etree

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


# VDSM runs before_device_create once per vNIC at every VM start; for a device with
# nothing to plug, its whole process should cost little more than importing lxml. These
# modules each cost it a measurable share (callgrind) and it uses none of them: the
# helper's schema and json, root work, dataclasses (and inspect's code generation),
# typing and tempfile (shutil, random).
NOT_FOR_A_DEVICE = {
    "dataclasses",
    "json",
    "qhook.vdsm.helper_client",
    "qhook.vdsm.plugging",
    "qhook.vocabulary.attachment",
    "qhook.vocabulary.schema",
    "random",
    "shutil",
    "subprocess",
    "tempfile",
    "typing",
}
# What a device that is not a Quantum vNIC does not load either: it reads no configuration.
NOT_FOR_ANOTHER_DEVICE = {"qhook.vocabulary.config", "configparser"}

# Run a hook script as its interpreter would, then print what it loaded beyond what the
# interpreter itself had loaded before it, and what importing lxml.etree alone loads
# (lxml 5 and later import typing themselves; EL9's 4.6 does not).
_LOADED_BY = """
import sys
before = set(sys.modules)
path = sys.argv[1]
with open(path) as script:
    code = compile(script.read(), path, "exec")
try:
    exec(code, {"__name__": "__main__", "__file__": path})
except SystemExit as end:
    status = end.code
print(repr((status, sorted(set(sys.modules) - before))))
"""
_LOADED_BY_LXML = """
import sys
before = set(sys.modules)
import lxml.etree
print(repr(sorted(set(sys.modules) - before)))
"""


def _device_hook_loads(tmp_path: Path, device: bytes, properties: Dict[str, str]) -> Set[str]:
    data = tmp_path / "device.xml"
    data.write_bytes(device)
    env = {k: v for k, v in os.environ.items() if k not in ("QHOOK_CONFIG", "vmId")}
    env.update(properties, PYTHONPATH=str(REPO), _hook_domxml=str(data))
    env["QHOOK_CONFIG"] = str(REPO / "packaging" / "quantum.conf")
    script = REPO / "hooks" / "before_device_create" / "50_quantum"
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_BY, str(script)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    status, loaded = ast.literal_eval(done.stdout.splitlines()[-1])
    assert (status, done.stderr) == (0, "")
    assert "qhook.vdsm.points.start" in loaded  # this checkout's hook ran
    lxml = subprocess.run(
        [sys.executable, "-c", _LOADED_BY_LXML], capture_output=True, text=True, check=True
    )
    return set(loaded) - set(ast.literal_eval(lxml.stdout))


def test_a_quantum_vnics_device_hook_loads_only_what_it_uses(tmp_path):
    domain = quantum_vm([seed_properties("openvswitch")])
    interface = domain.find("devices/interface")
    interface.tail = None
    properties = dict(seed_properties("openvswitch"), vmId=new_id())
    loaded = _device_hook_loads(tmp_path, etree.tostring(interface), properties)
    assert b'type="ethernet"' in (tmp_path / "device.xml").read_bytes()  # rewritten
    assert "qhook.vocabulary.config" in loaded
    assert sorted(loaded & NOT_FOR_A_DEVICE) == []


def test_another_devices_hook_loads_only_what_it_uses(tmp_path):
    device = b'<interface type="bridge"><mac address="00:1a:4a:16:01:57"/></interface>'
    loaded = _device_hook_loads(tmp_path, device, {"vmId": new_id()})
    assert sorted(loaded & (NOT_FOR_A_DEVICE | NOT_FOR_ANOTHER_DEVICE)) == []
