# SPDX-License-Identifier: GPL-2.0-or-later
"""Packaging: the checked-in hook scripts, the sdist and the RPM built from it by the spec."""

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List
from xml.etree import ElementTree

import pytest

from qhook import __version__
from qhook.install import SCRIPT_NAME, render
from qhook.vdsm.points import HOOK_POINTS
from tools import REPO, qhook_command, require_tool, without_openrc

NAME = "vdsm-hook-quantum"
LIBRARY = f"python3-{NAME}"
ENGINE = f"{NAME}-engine"
SPEC = REPO / "packaging" / f"{NAME}.spec"
EXAMPLE_VM = REPO / "examples" / "quantum-vm.xml"
VDSM_HOOKS_DIR = "/usr/libexec/vdsm/hooks"
SHEBANG = "#!/usr/bin/python3"
SITELIB = re.compile(r"^/usr/lib/python3\.\d+/site-packages$")

# Not part of a source tree: left out when the checkout is copied for a build.
TOP_LEVEL_LITTER = {".git", ".venv", ".tox", "build", "dist", ".benchmarks"}
LITTER = ("__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", "*.pyc")


def hook_dirs() -> List[Path]:
    return sorted(path for path in (REPO / "hooks").iterdir() if path.is_dir())


def repo_package_files() -> List[str]:
    """The qhook modules of the checkout, relative to the directory holding qhook/."""
    return sorted(str(path.relative_to(REPO)) for path in (REPO / "qhook").rglob("*.py"))


def run(args: List[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a build or query tool; its output is in the failure message if it fails."""
    result = subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )
    assert result.returncode == 0, (
        f"{' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    return result


def require_build_module() -> None:
    """PyPI's `build` (test extras): skipped on a laptop without it, a failure in CI."""
    if importlib.util.find_spec("build") is None:
        message = "the Python package 'build' is not installed"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must install it)")
        pytest.skip(message)


def copy_source_tree(destination: Path) -> Path:
    """The checkout without VCS data, caches and build output, so a build litters nothing."""

    def ignore(directory: str, names: List[str]) -> List[str]:
        ignored = set(shutil.ignore_patterns(*LITTER)(directory, names))
        if Path(directory) == REPO:
            ignored |= TOP_LEVEL_LITTER.intersection(names)
        return sorted(ignored)

    shutil.copytree(REPO, destination, ignore=ignore, symlinks=True)
    readme = destination / "README.md"
    if not readme.exists():  # setup.cfg and the spec need it; it is on its way into the tree
        readme.write_text(f"# {NAME}\n\nPlaceholder for the packaging test.\n")
    return destination


# The checked-in hook scripts


def test_hook_directories_are_the_hook_points():
    assert {path.name for path in hook_dirs()} == set(HOOK_POINTS)


@pytest.mark.parametrize("point", sorted(HOOK_POINTS))
def test_hook_script_is_rendered_and_executable(point):
    script = REPO / "hooks" / point / SCRIPT_NAME
    assert script.read_text() == render(point), f"regenerate {script.relative_to(REPO)}"
    mode = script.stat().st_mode
    assert mode & stat.S_IXUSR and mode & stat.S_IXGRP and mode & stat.S_IXOTH, oct(mode)


def test_spec_version_is_the_package_version():
    versions = re.findall(r"^Version:\s*(\S+)\s*$", SPEC.read_text(), re.MULTILINE)
    assert versions == [__version__]


# The RPM, built from the sdist


@pytest.fixture(scope="module")
def rpms(tmp_path_factory) -> Dict[str, Path]:
    """sdist of a copy of the checkout, then `rpmbuild -bb` of the spec on it: each
    package built, by name."""
    require_build_module()
    rpmbuild = require_tool("rpmbuild")
    work = tmp_path_factory.mktemp("rpm")
    source = copy_source_tree(work / "source")

    dist = work / "dist"
    # --skip-dependency-check: without isolation build would insist on `wheel`, which an
    # sdist does not use.
    run(
        [
            *(sys.executable, "-m", "build", "--sdist", "--no-isolation"),
            *("--skip-dependency-check", "--outdir", dist, source),
        ],
        cwd=work,
    )
    sdists = sorted(dist.glob("*.tar.gz"))
    assert len(sdists) == 1, sdists
    # setuptools names it vdsm-hook-quantum-V or vdsm_hook_quantum-V, as its version
    # normalises; Source0 is the former.
    topdir = work / "rpmbuild"
    (topdir / "SOURCES").mkdir(parents=True)
    shutil.copy(sdists[0], topdir / "SOURCES" / f"{NAME}-{__version__}.tar.gz")

    built = run(
        [
            *(rpmbuild, "-bb", "--nodeps", "--define", f"_topdir {topdir}"),
            *("--define", f"_tmppath {work}", source / "packaging" / SPEC.name),
            # %check runs the unit tests with this interpreter, which has pytest.
            *("--define", f"qhook_check_python {sys.executable}"),
        ],
        cwd=work,
    )
    assert re.search(r"\d+ passed", built.stdout + built.stderr), "no %check tests ran"
    built = {query(path, "--qf", "%{NAME}"): path for path in (topdir / "RPMS").rglob("*.rpm")}
    assert sorted(built) == sorted([NAME, LIBRARY, ENGINE])
    return built


@pytest.fixture(scope="module")
def rpm_file(rpms) -> Path:
    """The host's package: the hooks, the helper, the host configuration."""
    return rpms[NAME]


def query(rpm_file: Path, *options: str) -> str:
    return run([require_tool("rpm"), "-qp", *options, rpm_file]).stdout


def files_of(rpm_file: Path) -> Dict[str, str]:
    lines = query(rpm_file, "--qf", "[%{FILENAMES}\t%{FILEMODES:perms}\n]").splitlines()
    return dict(line.split("\t") for line in lines)


@pytest.fixture(scope="module")
def file_modes(rpms) -> Dict[str, str]:
    """The files of all three packages, as if all were installed, and their modes."""
    modes: Dict[str, str] = {}
    for path in rpms.values():
        modes.update(files_of(path))
    return modes


def requires_of(rpm_file: Path) -> List[str]:
    return [line.strip() for line in query(rpm_file, "--requires").splitlines() if line]


def sitelib_of(file_modes: Dict[str, str]) -> str:
    """The site-packages directory the RPM puts qhook in."""
    inits = [name for name in file_modes if name.endswith("/qhook/__init__.py")]
    assert len(inits) == 1, inits
    return inits[0][: -len("/qhook/__init__.py")]


@pytest.mark.parametrize("package", [NAME, LIBRARY, ENGINE])
def test_rpm_is_noarch_of_the_package_version(rpms, package):
    name, version, arch, license_ = query(
        rpms[package], "--qf", "%{NAME} %{VERSION} %{ARCH} %{LICENSE}"
    ).split()
    assert (name, version, arch, license_) == (package, __version__, "noarch", "GPL-2.0-or-later")
    assert rpms[package].name.endswith(".noarch.rpm")


def test_each_package_holds_its_part(rpms):
    host, library, engine = (set(files_of(rpms[name])) for name in (NAME, LIBRARY, ENGINE))
    assert any(name.startswith(VDSM_HOOKS_DIR + "/") for name in host)
    assert not any("/qhook/" in name for name in host | engine)
    assert "/usr/bin/qhook" in library and not any(name.startswith("/etc/") for name in library)
    assert not any(name.startswith(VDSM_HOOKS_DIR + "/") for name in library | engine)
    assert "/etc/vdsm-hook-quantum/engine.conf" in engine


@pytest.mark.parametrize("point", sorted(HOOK_POINTS))
def test_rpm_installs_executable_hook(file_modes, point):
    assert file_modes.get(f"{VDSM_HOOKS_DIR}/{point}/{SCRIPT_NAME}") == "-rwxr-xr-x"


def test_rpm_installs_only_our_hooks(file_modes):
    hooks = {name for name in file_modes if name.startswith(VDSM_HOOKS_DIR + "/")}
    assert hooks == {f"{VDSM_HOOKS_DIR}/{point}/{SCRIPT_NAME}" for point in HOOK_POINTS}


def test_rpm_installs_package_and_launcher(file_modes):
    sitelib = sitelib_of(file_modes)
    assert SITELIB.match(sitelib), sitelib
    packaged = sorted(
        name[len(sitelib) + 1 :]
        for name in file_modes
        if name.startswith(sitelib + "/qhook/") and name.endswith(".py")
    )
    assert packaged == repo_package_files()
    for name in packaged:
        assert file_modes[f"{sitelib}/{name}"] == "-rw-r--r--", name
    assert file_modes.get("/usr/bin/qhook") == "-rwxr-xr-x"
    assert any(name.endswith("/LICENSE") for name in file_modes)


def test_rpm_requires_python_lxml_and_vdsm(rpms):
    release = query(rpms[NAME], "--qf", "%{VERSION}-%{RELEASE}")
    exact = f"{LIBRARY} = {release}"
    assert {exact, "vdsm", "sudo", "python3-requests"} <= set(requires_of(rpms[NAME]))
    assert {"python3", "python3-lxml"} <= set(requires_of(rpms[LIBRARY]))
    assert {exact, "python3-requests"} <= set(requires_of(rpms[ENGINE]))
    assert "vdsm" not in requires_of(rpms[ENGINE]) + requires_of(rpms[LIBRARY])


# The RPM's payload, unpacked


@pytest.fixture(scope="module")
def extracted(rpms, tmp_path_factory) -> Path:
    """The RPMs' files under a temporary root, as `rpm2cpio | cpio -idm` unpacks them."""
    rpm2cpio, cpio = require_tool("rpm2cpio"), require_tool("cpio")
    root = tmp_path_factory.mktemp("root")
    for rpm_file in rpms.values():
        with subprocess.Popen([rpm2cpio, str(rpm_file)], stdout=subprocess.PIPE) as archive:
            unpacked = subprocess.run(
                [cpio, "-idm", "--quiet"],
                stdin=archive.stdout,
                cwd=root,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            archive.stdout.close()
        assert archive.returncode == 0
        assert unpacked.returncode == 0, unpacked.stderr
    return root


def interface_types(domxml: Path) -> List[str]:
    return [node.get("type", "") for node in ElementTree.parse(domxml).getroot().iter("interface")]


def test_extracted_scripts_use_system_python(extracted):
    scripts = [extracted / "usr/bin/qhook"] + [
        extracted / VDSM_HOOKS_DIR.lstrip("/") / point / SCRIPT_NAME for point in HOOK_POINTS
    ]
    for script in scripts:
        assert script.read_text().splitlines()[0] == SHEBANG, script


def test_extracted_hook_rewrites_example_vm(
    extracted, file_modes, tmp_path, ovs, configure, config_path
):
    """The packaged hooks, run on the packaged qhook in the sandbox, plug and unplug."""
    site_packages = extracted / sitelib_of(file_modes).lstrip("/")
    domxml = tmp_path / "domxml.xml"
    shutil.copy(EXAMPLE_VM, domxml)
    assert "ethernet" not in interface_types(domxml)
    env = {k: v for k, v in os.environ.items() if k not in ("vmId", "PYTHONPATH")}
    env.update(
        PYTHONPATH=str(site_packages), QHOOK_CONFIG=str(config_path), _hook_domxml=str(domxml)
    )

    # This interpreter, not the shebang: the system python3 need not have lxml.
    imported = run(
        [sys.executable, "-c", "import qhook; print(qhook.__file__)"], env=env, cwd=tmp_path
    )
    assert Path(imported.stdout.strip()) == site_packages / "qhook" / "__init__.py"

    hooks = extracted / VDSM_HOOKS_DIR.lstrip("/")
    run([*ovs.netns_exec, sys.executable, hooks / "before_vm_start" / SCRIPT_NAME], env=env)
    rewritten = domxml.read_text()
    assert "tap8e5f2a1c-4b" in rewritten
    assert "ethernet" in interface_types(domxml)
    assert "tap8e5f2a1c-4b" in ovs.in_netns("ip", "link", "show")
    run([*ovs.netns_exec, sys.executable, hooks / "after_vm_destroy" / SCRIPT_NAME], env=env)
    assert "tap8e5f2a1c-4b" not in ovs.in_netns("ip", "link", "show")

    version = run([sys.executable, extracted / "usr/bin/qhook", "--version"], env=env, cwd=tmp_path)
    assert __version__ in version.stdout


def test_rpm_installs_the_helper_and_its_sudoers_rule(rpm_file, file_modes, extracted):
    assert file_modes.get("/usr/libexec/vdsm-hook-quantum/qhook-privileged") == "-rwxr-xr-x"
    assert file_modes.get("/etc/sudoers.d/50_vdsm_hook_quantum") == "-r--r-----"
    assert "/etc/sudoers.d/50_vdsm_hook_quantum" in query(rpm_file, "-c").split()
    from qhook.install import render_helper, sudoers_rule

    helper = (extracted / "usr/libexec/vdsm-hook-quantum/qhook-privileged").read_text()
    assert helper.startswith("#!/usr/bin/python3 -I\n")  # no PYTHONPATH, no user site
    # Its configuration is fixed in it: the packaged file, never one its caller names.
    assert helper == render_helper("/usr/bin/python3", "/etc/vdsm/quantum.conf")
    assert "sudo" in query(rpm_file, "--requires").split()
    rule = extracted / "etc/sudoers.d/50_vdsm_hook_quantum"
    visudo = run([require_tool("visudo"), "-cf", rule])
    assert "parsed OK" in visudo.stdout
    # The rule allows the helper with no arguments at all.
    assert rule.read_text().endswith(sudoers_rule())


def test_rpm_ships_the_configuration_and_the_boot_cleanup(rpm_file, file_modes, extracted):
    configs = query(rpm_file, "-c").split()
    assert "/etc/vdsm/quantum.conf" in configs
    assert file_modes.get("/etc/vdsm/quantum.conf") == "-rw-r--r--"
    unit = "/usr/lib/systemd/system/vdsm-hook-quantum-cleanup.service"
    assert file_modes.get(unit) == "-rw-r--r--"
    text = (extracted / unit.lstrip("/")).read_text()
    assert "ExecStart=/usr/bin/qhook cleanup --grace 0" in text
    assert "Before=vdsmd.service" in text and "After=openvswitch.service" in text


def test_the_shipped_configuration_documents_every_setting_and_changes_none(tmp_path):
    from qhook.vocabulary.config import _SECTIONS, Config, load_config

    shipped = (REPO / "packaging" / "quantum.conf").read_text()
    config, warnings = load_config({"QHOOK_CONFIG": str(REPO / "packaging" / "quantum.conf")})
    assert warnings == [] and config.ovs == Config().ovs and config.wiring == Config().wiring
    assert config.host == Config().host and config.on_demand == Config().on_demand
    for section, keys in _SECTIONS.items():
        assert f"[{section}]" in shipped
        for key in keys:
            assert re.search(rf"^#{key} = ", shipped, re.M), f"[{section}] {key} undocumented"
    # Uncommented, the shown values are the defaults.
    uncommented = tmp_path / "q.conf"
    uncommented.write_text(re.sub(r"^#(\w+ = )", r"\1", shipped, flags=re.M))
    loaded, warnings = load_config({"QHOOK_CONFIG": str(uncommented)})
    assert warnings == []
    assert (loaded.ovs, loaded.wiring, loaded.host, loaded.on_demand) == (
        Config().ovs,
        Config().wiring,
        Config().host,
        Config().on_demand,
    )


def test_the_engine_package_ships_its_settings_secret_and_documented(rpms, file_modes, extracted):
    from qhook.quantum.settings import _KEYS, ENGINE_PATH

    assert file_modes.get(ENGINE_PATH) == "-rw-r-----"
    assert ENGINE_PATH in query(rpms[ENGINE], "-c").split()
    shipped = (extracted / ENGINE_PATH.lstrip("/")).read_text()
    assert shipped == (REPO / "packaging" / "engine.conf").read_text()
    for key in _KEYS:
        assert re.search(rf"^#{key} = ", shipped, re.M), f"[quantum] {key} undocumented"
    # As shipped it names nothing: the commands say what to set, and send nothing.
    env = without_openrc(QHOOK_CONFIG=str(extracted / ENGINE_PATH.lstrip("/")))
    done = qhook_command(env, "network", "list", timeout=60)
    assert done.returncode == 2
    assert "Quantum is not configured: set url (OS_NETWORK_URL)" in done.stderr


def test_the_host_package_ships_the_quantum_settings_for_root_alone(rpms, file_modes, extracted):
    from qhook.vocabulary.config import OnDemandConfig

    path = OnDemandConfig().settings
    assert file_modes.get(path) == "-rw-------"
    assert path in query(rpms[NAME], "-c").split()
    assert (extracted / path.lstrip("/")).read_text() == (
        REPO / "packaging" / "engine.conf"
    ).read_text()


def test_rpmlint(rpms):
    """rpmlint is clean; what it would still say is filtered, each with its reason, in
    packaging/vdsm-hook-quantum.rpmlintrc."""
    rpmlintrc = REPO / "packaging" / f"{NAME}.rpmlintrc"
    result = subprocess.run(
        [require_tool("rpmlint"), "-r", str(rpmlintrc), *map(str, rpms.values()), str(SPEC)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    findings = [line for line in result.stdout.splitlines() if re.search(r": [EW]: ", line)]
    assert findings == [], result.stdout
    assert re.search(r"0 errors, 0 warnings", result.stdout), result.stdout
    for line in rpmlintrc.read_text().splitlines():
        if line.startswith("addFilter"):
            previous = rpmlintrc.read_text().split(line)[0].rstrip().splitlines()[-1]
            assert previous.startswith(("#", "addFilter")), f"unexplained: {line}"
