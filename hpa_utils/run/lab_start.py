"""``make lab``: JupyterLab on the project, and first how to open it.

Starts this environment's ``jupyter lab`` with the project as its root folder, a token chosen here (or the one
given) and a fixed port (``--port N``, default 8888: a busy port that was asked for is an error, not silently
another one; the default moves to the next free port and says so), after printing the address to open: the URL
with its token and, for a remote machine (``make lab ARGS="--no-browser --port 9999"``), the SSH tunnel to it.
Every other argument goes to ``jupyter lab`` as it is.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

from hpa_utils.config.run_config import PROJ_ROOT

DEFAULT_PORT = 8888
_TOKEN_OPTIONS = ("--IdentityProvider.token=", "--ServerApp.token=", "--NotebookApp.token=")


def option(args: list[str], name: str) -> str | None:
    """The value of ``--name N`` or ``--name=N`` in ``args`` (the last one given), else None."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def instructions(port: int, token: str, host: str = "localhost") -> str:
    """What ``make lab`` prints before JupyterLab starts: the address, and the way in from another machine."""
    url = f"http://{host}:{port}/lab?token={token}"
    machine = socket.gethostname()
    return "\n".join(
        [
            "",
            f"  JupyterLab on the project: open {url}",
            "  A finished run: its executed notebooks are in runs/<preset>/notebooks/; a source in notebooks/ opens",
            "  the run its parameters cell names (Run > Run All Cells); notebooks/06_explore.ipynb explores it.",
            f'  On a remote machine: make lab ARGS="--no-browser --port {port}" there, then here',
            f"    ssh -N -L {port}:localhost:{port} {machine}   and open the URL above in this machine's browser.",
            "  Ctrl-C stops the server.",
            "",
        ]
    )


def lab_command(args: list[str], root: Path, port: int, token: str) -> list[str]:
    """The ``jupyter lab`` command: the project as root, this port exactly, this token, then ``args``."""
    given = [a for i, a in enumerate(args) if not (a == "--port" or a.startswith("--port=") or _after_port(args, i))]
    command = [str(Path(sys.executable).with_name("jupyter")), "lab", f"--ServerApp.root_dir={root}"]
    command += [f"--port={port}", "--ServerApp.port_retries=0"]
    if not any(a.startswith(_TOKEN_OPTIONS) for a in args):
        command.append(f"--IdentityProvider.token={token}")
    if os.geteuid() == 0 and "--allow-root" not in args:
        command.append("--allow-root")
    return command + given


def _after_port(args: list[str], index: int) -> bool:
    return index > 0 and args[index - 1] == "--port"


def main(argv: list[str] | None = None) -> int:
    """Print how to open JupyterLab, then become ``jupyter lab`` (Ctrl-C stops it as usual)."""

    args = list(sys.argv[1:] if argv is None else argv)
    asked = option(args, "--port")
    if asked is not None:
        if not asked.isdigit():
            print(f"make lab: --port {asked!r} is not a port number", file=sys.stderr)
            return 2
        port = int(asked)
        if not port_is_free(port):
            print(f'make lab: port {port} is in use; choose another: make lab ARGS="--port N"', file=sys.stderr)
            return 1
    else:
        port = next((p for p in range(DEFAULT_PORT, DEFAULT_PORT + 50) if port_is_free(p)), DEFAULT_PORT)
        if port != DEFAULT_PORT:
            print(f"make lab: port {DEFAULT_PORT} is in use, using {port}")
    token = next((a.split("=", 1)[1] for a in args if a.startswith(_TOKEN_OPTIONS)), None) or secrets.token_hex(24)
    ip = option(args, "--ip") or option(args, "--ServerApp.ip")
    host = socket.gethostname() if ip and ip not in ("localhost", "127.0.0.1") else "localhost"
    print(instructions(port, token, host), flush=True)
    command = lab_command(args, PROJ_ROOT, port, token)
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
