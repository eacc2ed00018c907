# SPDX-License-Identifier: GPL-2.0-or-later
"""The `qhook` command: operator and demo tools around the hooks."""

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

from qhook import PROGRAM, __version__, domxml, hookscripts
from qhook.errors import QhookError, one_line
from qhook.lifecycle import HOOK_POINTS


def _fail(message: str) -> int:
    line = f"qhook: {one_line(message)}\n"
    sys.stderr.write(line.encode("ascii", "backslashreplace").decode("ascii"))
    return 2


def _interfaces(document_xml: bytes) -> List[str]:
    domain = domxml.parse(document_xml, "domain XML").root
    return [domxml.element_bytes(i).decode("utf-8") for i in domxml.interfaces(domain)]


def _run(args: argparse.Namespace) -> int:
    from qhook.vdsm_emulator import HookFailed, VdsmEmulator

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
            hookscripts.write_tree(hooks_dir, HOOK_POINTS, sys.executable)
        emulator = VdsmEmulator(hooks_dir, env)
        try:
            started = emulator.start_vm(original, data_dir=scratch)
        except HookFailed as failure:
            return _fail(str(failure))
        except QhookError as error:
            return _fail(str(error))
    for run in started.runs:
        for line in run.stderr.splitlines():
            sys.stderr.write(f"[{run.point}] {line}\n")
    if args.interfaces:
        before, after = _interfaces(original), _interfaces(started.domain_xml)
        print("<!-- interfaces before the hooks -->")
        print("\n".join(before))
        print("<!-- interfaces after the hooks (each rewritten one moved to the end) -->")
        print("\n".join(after))
    else:
        sys.stdout.write(started.domain_xml.decode("utf-8"))
        sys.stdout.write("\n")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qhook", description=f"{PROGRAM}: oVirt vNICs on Quantum/Neutron networks."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    run = commands.add_parser(
        "run",
        help="run the hooks on a domain XML as VDSM does at VM start; print the result",
        description="Run before_device_create for each vNIC with custom properties in the "
        "oVirt metadata, then before_vm_start, exactly as VDSM does, and print the "
        "domain XML libvirt would get.",
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
        "--interfaces", action="store_true", help="print only the interfaces, before and after"
    )
    run.set_defaults(handler=_run)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except Exception as error:  # one line, never a traceback
        return _fail(f"internal error: {type(error).__name__}: {error}")


if __name__ == "__main__":
    sys.exit(main())
