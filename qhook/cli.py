# SPDX-License-Identifier: GPL-2.0-or-later
"""The `qhook` command: operator and demo tools around the hooks."""

import argparse
import copy
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, NoReturn, Optional

from qhook import PROGRAM, __version__, install
from qhook.engine import commands as engine_commands
from qhook.engine import sync_command
from qhook.errors import ConfigError, QhookError, one_line
from qhook.vdsm import domxml
from qhook.vdsm.points import HOOK_POINTS
from qhook.vocabulary.config import described


def _fail(message: str) -> int:
    line = f"qhook: {one_line(message)}\n"
    sys.stderr.write(line.encode("ascii", "backslashreplace").decode("ascii"))
    return 2


def _pretty(element: domxml.Element) -> str:
    clone = copy.deepcopy(element)
    clone.tail = None
    domxml.etree.cleanup_namespaces(clone)
    domxml.etree.indent(clone, space="  ")
    return domxml.element_bytes(clone).decode("utf-8")


def _by_mac(domain: domxml.Element) -> Dict[str, domxml.Element]:
    return {(domxml.interface_mac(i) or "?").lower(): i for i in domxml.interfaces(domain)}


def _show_interfaces(original: bytes, final: bytes) -> None:
    """Each vNIC with its custom properties, before and after the hooks."""
    before = domxml.parse(original, "domain XML").root
    after = _by_mac(domxml.parse(final, "domain XML").root)
    properties = domxml.device_properties(before)
    for mac, interface in _by_mac(before).items():
        custom = " ".join(f"{k}={v}" for k, v in properties.get(mac, {}).items())
        print(f"=== vNIC {mac}: {custom or 'no custom properties'}")
        print(_pretty(interface))
        if mac in after and _pretty(after[mac]) != _pretty(interface):
            print("--- rewritten by the hooks to:")
            print(_pretty(after[mac]))
        else:
            print("--- left as it is")
        print()


def _run(args: argparse.Namespace) -> int:
    from qhook.lab.vdsm_emulator import HookFailed, VdsmEmulator

    try:
        original = Path(args.domxml).read_bytes()
    except OSError as error:
        return _fail(f"cannot read {args.domxml}: {error.strerror or error}")
    env = dict(os.environ)
    if args.config:
        env["QHOOK_CONFIG"] = os.path.abspath(args.config)
    with tempfile.TemporaryDirectory(prefix="qhook-run-") as scratch:
        hooks_dir = Path(args.hooks_dir) if args.hooks_dir else Path(scratch, "hooks")
        if not args.hooks_dir:
            install.write_tree(hooks_dir, HOOK_POINTS, sys.executable)
        wrapper = ["ip", "netns", "exec", args.netns] if args.netns else []
        emulator = VdsmEmulator(hooks_dir, env, wrapper=wrapper)
        try:
            started = emulator.start_vm(original, data_dir=scratch)
            if not args.keep:
                started.runs.append(emulator.destroy_vm(started.domain_xml, data_dir=scratch))
        except HookFailed as failure:
            return _fail(str(failure))
        except QhookError as error:
            return _fail(str(error))
    for run in started.runs:
        for line in run.stderr.splitlines():
            sys.stderr.write(f"[{run.point}] {line}\n")
    if args.interfaces:
        _show_interfaces(original, started.domain_xml)
    else:
        sys.stdout.write(started.domain_xml.decode("utf-8"))
        sys.stdout.write("\n")
    return 0


def _load(args: argparse.Namespace):
    """The configuration of `qhook status` and `qhook cleanup`. As root (the boot-time
    cleanup), only from a file root alone could have written, as the helper reads it."""
    from qhook.host.trust import MissingFile, load_trusted_config
    from qhook.vocabulary.config import Config, config_path, load_config, missing_named_file

    env = dict(os.environ)
    if args.config:
        env["QHOOK_CONFIG"] = args.config
    if os.geteuid() == 0:
        try:
            config, warnings = load_trusted_config(config_path(env))
        except MissingFile:
            if env.get("QHOOK_CONFIG"):
                raise ConfigError(missing_named_file(config_path(env))) from None
            config, warnings = Config(), []
    else:
        config, warnings = load_config(env)
    for warning in warnings:
        sys.stderr.write(f"qhook: warning: {warning}\n")
    return config


def _seconds(text: str) -> float:
    """A --grace value: seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!a} is not a number of seconds") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!a}: expected 0 or more seconds")
    return value


def _yes(value: Optional[bool]) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _status(args: argparse.Namespace) -> int:
    from qhook.host import inventory

    config = _load(args)
    entries, problem = inventory.survey(config, args.grace)
    if problem:
        problem = f"{problem} (configuration: {described(config)})"
    if args.json:
        print(json.dumps({"ports": [e.as_dict() for e in entries], "ovs_error": problem}, indent=2))
    else:
        row = "{:<15} {:<36} {:<36} {:<4} {:<6} {:<6} {:<15} {:<15} {:<6} {:<5} {}"
        print(
            row.format(
                "TAP",
                "VNIC",
                "VM",
                "TAP",
                "IN-USE",
                "HYBRID",
                "BRIDGE",
                "OVS-PORT",
                "OFPORT",
                "WIRED",
                "STALE",
            )
        )
        for e in entries:
            print(
                row.format(
                    e.tap,
                    e.vnic or "?",
                    e.vm or "?",
                    _yes(e.device),
                    _yes(e.in_use),
                    _yes(bool(e.hybrid)),
                    e.bridge or "-",
                    e.port or "-",
                    "-" if e.ofport is None else e.ofport,
                    _yes(e.wired),
                    e.stale or "",
                )
            )
    if problem:
        return _fail(problem)
    return 0


def _cleanup(args: argparse.Namespace) -> int:
    from qhook.host import inventory

    config = _load(args)
    entries, problem = inventory.survey(config, args.grace)
    if problem:
        return _fail(f"{problem} (configuration: {described(config)}); nothing removed")
    done = inventory.clean(config, entries, args.dry_run)
    for line in done:
        print(line)
    if not done:
        print("nothing to remove: no stale tap or port of this package on this host")
    if args.quantum:
        # What the first pass removes (or would) is no VM's any more.
        alive = [entry for entry in entries if not entry.stale]
        done, notes, complete = inventory.clean_quantum(config, alive, args.grace, args.dry_run)
        for line in done:
            print(line)
        for note in notes:
            sys.stderr.write(f"qhook: note: {note}\n")
        if not complete:
            return _fail("some Quantum ports could not be deleted (see above)")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from qhook.lab.demo import run_demo, stop_demo
    from qhook.lab.sandbox import SandboxError

    try:
        if args.stop:
            return stop_demo(args.stop)
        return run_demo(args.domxml, args.keep, _show_interfaces, with_vm=not args.no_vm)
    except (SandboxError, QhookError) as error:
        return _fail(f"demo: {error}")
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        return _fail(f"demo: {where}{error.strerror or error}")
    except KeyboardInterrupt:
        return _fail("demo: interrupted; everything it started is stopped")


def _helper(args: argparse.Namespace, interpreter: str) -> int:
    """Write the privileged helper, its configuration baked in; print its sudoers rule."""
    from qhook.vocabulary.config import DEFAULT_PATH

    config = args.config or DEFAULT_PATH
    for what, path in (("--path", args.path), ("--config", config), ("--interpreter", interpreter)):
        if not re.fullmatch(r"/[A-Za-z0-9_./+-]*", path) or "/../" in path + "/":
            return _fail(f"{what} {path!a} is not an absolute path of letters, digits and _./+-")
    helper = Path(args.path)
    if helper.exists() and not install.ours(
        helper.read_text(errors="replace"), install.HELPER_MARKS
    ):
        return _fail(f"{helper} exists and is not this package's helper; nothing written")
    helper.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    helper.write_text(install.render_helper(interpreter, config))
    helper.chmod(0o755)
    print(f"# wrote {helper}; it reads its configuration from {config} only.")
    if not os.path.exists(config):
        print(f"# {config} does not exist yet: the helper refuses to work until it does.")
    print("# Install this as /etc/sudoers.d/50_vdsm_hook_quantum (mode 0440, visudo -c):")
    sys.stdout.write(install.sudoers_rule(str(helper)))
    return 0


def _hooks(args: argparse.Namespace) -> int:
    """Print one hook script, or install all of them, for a host without the RPM; or
    write the privileged helper."""
    interpreter = args.interpreter or sys.executable
    if args.action == "helper":
        return _helper(args, interpreter)
    if args.action == "print":
        if args.point is None:
            return _fail(f"hooks print needs a hook point: one of {', '.join(sorted(HOOK_POINTS))}")
        if args.point not in HOOK_POINTS:
            return _fail(f"{args.point!a} is not a hook point of this package")
        sys.stdout.write(install.render(args.point, interpreter))
        return 0
    directory = Path(args.dir)
    for point in sorted(HOOK_POINTS):
        script = directory / point / install.SCRIPT_NAME
        if script.exists() and not install.ours(
            script.read_text(errors="replace"), install.SCRIPT_MARKS
        ):
            return _fail(f"{script} exists and is not this package's; nothing installed")
    install.write_tree(directory, sorted(HOOK_POINTS), interpreter)
    for point in sorted(HOOK_POINTS):
        print(directory / point / install.SCRIPT_NAME)
    return 0


UUID_PATTERN = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# 68 to 65535 (the MTU range the hooks accept), without leading zeros.
MTU_PATTERN = (
    "(6[89]|[7-9][0-9]|[1-9][0-9]{2,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}"
    "|655[0-2][0-9]|6553[0-5])"
)


def engine_config_command(cluster_version: str) -> str:
    """The engine-config command that defines the seed's vNIC custom properties."""
    from qhook.plugins import SEED_PLUGINS
    from qhook.vocabulary.properties import MTU, SEED_IDS

    plugins = "|".join(sorted(plugin.value for plugin in SEED_PLUGINS))
    properties = [f"plugin=^({plugins})$"] + [f"{name}=^{UUID_PATTERN}$" for name in SEED_IDS]
    properties.append(f"{MTU}=^{MTU_PATTERN}$")
    value = "{type=interface;prop={" + ";".join(properties) + "}}"
    return f"engine-config -s CustomDeviceProperties='{value}' --cver={cluster_version}"


def _engine_config(args: argparse.Namespace) -> int:
    if not re.fullmatch(r"\d+\.\d+", args.cver):
        return _fail(f"--cver {args.cver!a} is not a cluster version such as 4.7")
    print("# On the engine machine; this sets the interface custom properties of that")
    print("# cluster version: merge with those `engine-config -g CustomDeviceProperties`")
    print("# shows, then restart ovirt-engine.")
    print(engine_config_command(args.cver))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error said in one line (--help shows the usage)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.partition(" ")[2]
        where = f"{command}: " if command else ""
        self.exit(2, f"qhook: {where}{one_line(message)}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qhook", description=f"{PROGRAM}: oVirt vNICs on Quantum/Neutron networks."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run the hooks on a domain XML as VDSM does at VM start; print the result",
        description="Run before_device_create for each vNIC with custom properties in the "
        "oVirt metadata, then before_vm_start (which plugs the vNICs), exactly as VDSM does, "
        "and print the domain XML libvirt would get; then after_vm_destroy, unless --keep.",
    )
    run.add_argument("domxml", help="a libvirt domain XML carrying oVirt metadata")
    run.add_argument(
        "--hooks-dir",
        help="run the hook scripts in this tree (e.g. /usr/libexec/vdsm/hooks) instead of "
        "scripts generated for this interpreter",
    )
    run.add_argument(
        "--config", help="configuration file (default: $QHOOK_CONFIG or /etc/vdsm/quantum.conf)"
    )
    run.add_argument(
        "--netns", help="run the hooks inside this network namespace, as if it were the host"
    )
    run.add_argument(
        "--keep",
        action="store_true",
        help="leave the vNICs plugged (by default after_vm_destroy runs at the end, as when "
        "the VM stops)",
    )
    run.add_argument(
        "--interfaces",
        action="store_true",
        help="print each vNIC before and after, instead of the whole domain",
    )
    run.set_defaults(handler=_run)

    demo = commands.add_parser(
        "demo",
        help="a VM's life through the hooks, on a private Open vSwitch, OVN and libvirt (root)",
        description="Run a VM's start and stop through the hooks as VDSM would, on a private "
        "Open vSwitch with OVN as the agent and a real libvirt VM, in a network namespace of "
        "their own, and show what happens on the host.",
    )
    demo.add_argument("domxml", nargs="?", help="domain XML (default: the bundled example)")
    demo.add_argument("--keep", action="store_true", help="leave it all running to explore")
    demo.add_argument("--no-vm", action="store_true", help="run the hooks without booting a VM")
    demo.add_argument(
        "--stop",
        metavar="DIR",
        help="stop everything a demo kept with --keep started (its directory, as it printed)",
    )
    demo.set_defaults(handler=_demo)

    hooks = commands.add_parser(
        "hooks",
        help="print or install the hook scripts and the privileged helper (hosts without the RPM)",
        description="Print one hook script, or install one per hook point into VDSM's "
        "hooks directory, each calling qhook with this (or the given) interpreter; or "
        "(helper) write the privileged helper, with its configuration file fixed in it, "
        "and print the sudoers rule that lets vdsm run it.",
    )
    hooks.add_argument("action", choices=["print", "install", "helper"])
    hooks.add_argument("point", nargs="?", help="with print: the hook point")
    hooks.add_argument("--dir", default="/usr/libexec/vdsm/hooks", help="with install")
    hooks.add_argument("--interpreter", help="the Python for the scripts (default: this one)")
    hooks.add_argument("--path", default=install.HELPER_PATH, help="with helper: where it goes")
    hooks.add_argument(
        "--config",
        help="with helper: the only configuration file it reads (default /etc/vdsm/quantum.conf)",
    )
    hooks.set_defaults(handler=_hooks)

    engine = commands.add_parser(
        "engine-config",
        help="print the engine-config command defining the vNIC custom properties",
        description="Print the engine-config command that defines the custom device "
        "properties (plugin, q_network_id, q_port_id, q_attachment_id, mtu) for interfaces, "
        "with strict patterns, for a cluster version.",
    )
    engine.add_argument("--cver", default="4.7", help="cluster version (default 4.7)")
    engine.set_defaults(handler=_engine_config)
    engine_commands.add_commands(commands)
    sync_command.add_commands(commands)

    for name, handler, text in (
        ("status", _status, "list this host's Quantum taps and ports, and flag stale ones"),
        ("cleanup", _cleanup, "remove our stale ports and taps (what a crash or reboot left)"),
    ):
        command = commands.add_parser(name, help=text, description=text + ".")
        command.add_argument("--config", help="configuration file")
        command.add_argument(
            "--grace",
            type=_seconds,
            default=120.0,
            help="a tap no VM holds counts as stale only when plugged longer ago than this "
            "many seconds (default 120), so a starting VM keeps its tap",
        )
        if name == "status":
            command.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            command.add_argument("--dry-run", action="store_true", help="only say what would go")
            command.add_argument(
                "--quantum",
                action="store_true",
                help="also delete the Quantum ports made on demand for this host whose VM has "
                "nothing plugged here any more (needs the [on_demand] settings)",
            )
        command.set_defaults(handler=handler)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except QhookError as error:  # the operator's to fix: one line (JSON with --json)
        kind = engine_commands.KIND_CONFIG if isinstance(error, ConfigError) else None
        return engine_commands.say_error(args, error, 2, kind)
    except Exception as error:  # a bug of ours: still one line, never a traceback
        return _fail(f"internal error: {type(error).__name__}: {error}")


if __name__ == "__main__":
    sys.exit(main())
