# SPDX-License-Identifier: GPL-2.0-or-later
"""VDSM's hook runner, emulated: for the demo (`qhook run`) and the tests.

It follows VDSM's contract (lib/vdsm/common/hooks.py): every executable regular file in
``<hooks>/<point>/`` runs in sorted name order with the data in a temporary file
named by ``_hook_domxml``; the environment is VDSM's plus the device's custom
properties (device hooks) plus the VM's (the VM's win) plus ``vmId``; exit 1 is an
error, exit 2 an error that stops the remaining hooks of the point. And its flows
(lib/vdsm/virt/vm.py): at VM start, before_device_create runs for each device with a
``custom`` entry in the metadata and the rewritten device moves to the end of
``<devices>``; then before_vm_start runs on the whole domain. Suspend, resume, a
memory snapshot's restore and the source side of a migration run as vm.py runs them
(see hibernate_vm, restore_vm, migrate_away): which XML each point gets, which outputs
are ignored, the environment.
"""

import copy
import os
import pwd
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from qhook.vdsm import domxml

# Hook points whose failure aborts the VM operation (hooks.py: raiseError, or
# before_vm_start's own raise once the directory ran).
ABORTING_POINTS = frozenset(
    {
        "before_device_create",
        "before_vm_start",
        "before_nic_hotplug",
        "before_nic_hotunplug",
        "before_update_device",
        "before_vm_migrate_destination",
        "before_device_migrate_destination",
        "before_vm_migrate_source",
        "before_device_migrate_source",
        "before_vm_hibernate",
        "before_vm_dehibernate",
    }
)


@dataclass(frozen=True)
class ScriptRun:
    """One hook script's run."""

    script: str
    returncode: int
    stderr: str


@dataclass
class PointRun:
    """Every script of one hook point, run on one data file."""

    point: str
    data_out: bytes
    scripts: List[ScriptRun] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(run.returncode != 0 for run in self.scripts)

    @property
    def stderr(self) -> str:
        return "".join(run.stderr for run in self.scripts)


class HookFailed(Exception):
    """A hook point whose failure aborts the operation failed."""

    def __init__(self, run: PointRun):
        self.run = run
        codes = ", ".join(f"{Path(s.script).name} exit {s.returncode}" for s in run.scripts)
        super().__init__(f"{run.point} failed ({codes}): {run.stderr.strip()}")


class VdsmEmulator:
    """Runs hook scripts from a hooks directory the way VDSM does."""

    def __init__(
        self,
        hooks_dir: Path,
        env: Optional[Mapping[str, str]] = None,
        script_timeout: float = 300.0,
        wrapper: Sequence[str] = (),
        run_as: Optional[str] = None,
    ):
        self.hooks_dir = Path(hooks_dir)
        self.env = dict(os.environ if env is None else env)
        # A command prefix for every script, e.g. `ip netns exec NS` to act as another host.
        self.wrapper = list(wrapper)
        # The user the scripts run as (VDSM's is `vdsm`); None: this process's user.
        self.run_as = run_as
        # VDSM puts no timeout on hooks; this bound only keeps a stuck test finite.
        self.script_timeout = script_timeout

    def scripts(self, point: str) -> List[Path]:
        directory = self.hooks_dir / point
        if not directory.is_dir():
            return []
        # VDSM globs '<dir>/*' (no dot files) and keeps executable regular files.
        return sorted(
            path
            for path in directory.iterdir()
            if not path.name.startswith(".") and path.is_file() and os.access(path, os.X_OK)
        )

    def run_point(
        self,
        point: str,
        data: bytes,
        properties: Optional[Mapping[str, str]] = None,
        vm_id: Optional[str] = None,
        data_dir: Optional[str] = None,
    ) -> PointRun:
        """Run every script of a hook point on data; raise HookFailed where VDSM would."""
        env = dict(self.env)
        env.update(properties or {})
        if vm_id:
            env["vmId"] = vm_id
        fd, path = tempfile.mkstemp(prefix="hook-", dir=data_dir)
        result = PointRun(point=point, data_out=data)
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(data)
            if self.run_as:
                user = pwd.getpwnam(self.run_as)
                os.chown(path, user.pw_uid, user.pw_gid)
            env["_hook_domxml"] = path
            for script in self.scripts(point):
                run = self._run_script(script, env)
                result.scripts.append(run)
                if run.returncode == 2:
                    break
            with open(path, "rb") as stream:
                result.data_out = stream.read()
        finally:
            os.unlink(path)
        if result.failed and point in ABORTING_POINTS:
            raise HookFailed(result)
        return result

    def _as_user(self) -> List[str]:
        return ["runuser", "-u", self.run_as, "--"] if self.run_as else []

    def _run_script(self, script: Path, env: Mapping[str, str]) -> ScriptRun:
        try:
            done = subprocess.run(
                [*self.wrapper, *self._as_user(), str(script)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=self.script_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ScriptRun(str(script), -9, f"killed after {self.script_timeout:g} s\n")
        return ScriptRun(str(script), done.returncode, done.stderr.decode("utf-8", "replace"))

    def _custom_devices(self, domain: domxml.Element):
        """(interface, its device XML, its custom properties with the VM's) for every vNIC
        with a `custom` entry in the metadata: the devices VDSM runs device hooks for."""
        vm_properties = domxml.vm_properties(domain)
        device_properties = domxml.device_properties(domain)
        for interface in domxml.interfaces(domain):
            mac = (domxml.interface_mac(interface) or "").lower()
            if mac not in device_properties:
                continue
            properties: Dict[str, str] = dict(device_properties[mac])
            properties.update(vm_properties)
            device = copy.deepcopy(interface)
            device.tail = None
            domxml.etree.cleanup_namespaces(device)
            yield interface, domxml.element_bytes(device), properties

    def start_vm(self, domain_xml: bytes, data_dir: Optional[str] = None) -> "VmStart":
        """The hooks of a VM start: device hooks, then before_vm_start; the final XML."""
        document = domxml.parse(domain_xml, "domain XML")
        domain = document.root
        vm_id = domain.findtext("uuid")
        devices = domain.find("devices")
        runs: List[PointRun] = []
        for interface, device, properties in list(self._custom_devices(domain)):
            run = self.run_point("before_device_create", device, properties, vm_id, data_dir)
            runs.append(run)
            rewritten = domxml.parse(run.data_out, "device XML").root
            devices.remove(interface)
            domxml.append_child(devices, rewritten)
        run = self.run_point(
            "before_vm_start",
            domxml.serialize(document),
            domxml.vm_properties(domain),
            vm_id,
            data_dir,
        )
        runs.append(run)
        return VmStart(domain_xml=run.data_out, runs=runs)

    def _vm_point(self, point: str, domain_xml: bytes, data_dir=None, **extra: str) -> PointRun:
        """A VM-level hook point on this domain XML, with the VM's properties and vmId."""
        domain = domxml.parse(domain_xml, "domain XML").root
        properties = {**domxml.vm_properties(domain), **extra}
        return self.run_point(point, domain_xml, properties, domain.findtext("uuid"), data_dir)

    def hibernate_vm(
        self,
        running_xml: bytes,
        save: Optional[Callable[[], None]] = None,
        data_dir: Optional[str] = None,
    ) -> List[PointRun]:
        """Suspend (vm.hibernate): before_vm_hibernate on the running domain's XML (its
        failure aborts), libvirt saves the domain (save()), after_vm_hibernate when
        libvirt reports it stopped as saved; then the VM is released: after_vm_destroy."""
        runs = [self._vm_point("before_vm_hibernate", running_xml, data_dir)]
        if save is not None:
            save()
        runs.append(self._vm_point("after_vm_hibernate", running_xml, data_dir))
        runs.append(self.destroy_vm(running_xml, data_dir))
        return runs

    def restore_vm(
        self,
        engine_xml: bytes,
        saved_xml: bytes,
        from_snapshot: bool,
        restore: Optional[Callable[[bytes], bytes]] = None,
        data_dir: Optional[str] = None,
    ) -> List[PointRun]:
        """Resume after a suspension (from_snapshot False), or restore a memory snapshot
        (True), as vm._run does for a FILE origin: the device hooks and before_vm_start
        on the XML VDSM builds from the engine's, their output ignored (a failure still
        aborts); before_vm_dehibernate on the saved image's XML (a snapshot's: the XML
        the engine kept) with FROM_SNAPSHOT, its output ignored too; libvirt defines
        and restores the saved XML (restore(saved XML) -> the running domain's XML);
        after_vm_dehibernate on the running domain's XML."""
        runs = self.start_vm(engine_xml, data_dir).runs
        flag = {"FROM_SNAPSHOT": str(from_snapshot)}
        runs.append(self._vm_point("before_vm_dehibernate", saved_xml, data_dir, **flag))
        running = restore(saved_xml) if restore is not None else saved_xml
        # vm.py passes the bool here; an environment holds its text.
        runs.append(self._vm_point("after_vm_dehibernate", running, data_dir, **flag))
        return runs

    def migrate_away(
        self,
        running_xml: bytes,
        migrate: Optional[Callable[[], None]] = None,
        data_dir: Optional[str] = None,
    ) -> List[PointRun]:
        """The source side of a migration (vm.prepare_migration, then the STOPPED/MIGRATED
        event): before_device_migrate_source per vNIC with custom properties and
        before_vm_migrate_source (failures abort), libvirt migrates (migrate()),
        after_vm_migrate_source and after_device_migrate_source, then after_vm_destroy."""
        domain = domxml.parse(running_xml, "domain XML").root
        vm_id = domain.findtext("uuid")
        devices = list(self._custom_devices(domain))
        runs = [
            self.run_point("before_device_migrate_source", device, properties, vm_id, data_dir)
            for _, device, properties in devices
        ]
        runs.append(self._vm_point("before_vm_migrate_source", running_xml, data_dir))
        if migrate is not None:
            migrate()
        runs.append(self._vm_point("after_vm_migrate_source", running_xml, data_dir))
        runs += [
            self.run_point("after_device_migrate_source", device, properties, vm_id, data_dir)
            for _, device, properties in devices
        ]
        runs.append(self.destroy_vm(running_xml, data_dir))
        return runs

    def migrate_in(
        self,
        source_xml: bytes,
        migrate: Optional[Callable[[], bytes]] = None,
        data_dir: Optional[str] = None,
    ) -> List[PointRun]:
        """The destination side of a migration: before_device_migrate_destination per vNIC
        with custom properties and before_vm_migrate_destination on the source's XML (their
        output ignored, failures abort), the incoming migration (migrate() -> the running
        domain's XML; else the source's), then after_vm_migrate_destination."""
        domain = domxml.parse(source_xml, "domain XML").root
        vm_id = domain.findtext("uuid")
        runs = [
            self.run_point("before_device_migrate_destination", device, properties, vm_id, data_dir)
            for _, device, properties in self._custom_devices(domain)
        ]
        runs.append(self._vm_point("before_vm_migrate_destination", source_xml, data_dir))
        running = migrate() if migrate is not None else source_xml
        runs.append(self._vm_point("after_vm_migrate_destination", running, data_dir))
        return runs

    def update_device(
        self,
        device_xml: bytes,
        properties: Mapping[str, str],
        vm_id: str,
        libvirt_accepts: bool = True,
        data_dir: Optional[str] = None,
    ) -> List[PointRun]:
        """A running VM's device changed (e.g. a vNIC's profile): before_update_device on
        the new device XML, then after_update_device, or after_update_device_fail when
        libvirt refuses the device."""
        before = self.run_point("before_update_device", device_xml, properties, vm_id, data_dir)
        after = "after_update_device" if libvirt_accepts else "after_update_device_fail"
        return [before, self.run_point(after, before.data_out, properties, vm_id, data_dir)]

    def destroy_vm(self, domain_xml: bytes, data_dir: Optional[str] = None) -> PointRun:
        """after_vm_destroy with the last domain XML, as VDSM runs it once per VM."""
        domain = domxml.parse(domain_xml, "domain XML").root
        return self.run_point(
            "after_vm_destroy",
            domain_xml,
            domxml.vm_properties(domain),
            domain.findtext("uuid"),
            data_dir,
        )


@dataclass
class VmStart:
    """What a VM start's hooks produced."""

    domain_xml: bytes
    runs: List[PointRun]
