"""``swiftkit web-ui [--host H] [--port P] [--lang en|zh] [--share] [--api_key KEY | --api_key_file PATH]
[--workdir DIR]``.

Serves the browser UI (Gradio, the ``webui`` extra) on 127.0.0.1 by default. Serving it to other machines
(a host that is not a loopback address, or ``--share``'s public link) prints a warning and needs a key
(``--api_key``, or the first line of ``--api_key_file``): the page then asks for the user ``swiftkit``
with the key as password. Every job the UI
starts is a ``swiftkit`` subprocess run in ``--workdir``, its record kept under ``WORKDIR/jobs/``.
Gradio is imported only when the server starts, never for ``--help``.
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import signal
import socket
import sys
from pathlib import Path

# Gradio's usage statistics and version check, and the hub's telemetry, stay off: the UI makes no network calls.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}


def webui_parser() -> argparse.ArgumentParser:
    """The flags of `swiftkit web-ui`."""
    parser = argparse.ArgumentParser(
        prog="swiftkit web-ui",
        description="Serve the browser UI: data checks, training, chat, evaluation, export and deployment, each "
        "action a `swiftkit` job whose command line the page shows.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address to listen on. Anything but a loopback address needs --api_key. "
                        "(default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="Port to listen on. (default: 7860)")
    parser.add_argument("--lang", choices=("en", "zh"), default="en",
                        help="Language of the labels: en (English) or zh (Chinese). (default: en)")
    parser.add_argument("--share", action="store_true",
                        help="Also publish the UI through a public gradio.live link (needs --api_key and network).")
    parser.add_argument("--api_key", default=None, metavar="KEY",
                        help="Password of the page's login (user 'swiftkit'); required with --share or a "
                        "non-loopback --host. Other users of the machine see a flag in `ps`: prefer --api_key_file.")
    parser.add_argument("--api_key_file", default=None, metavar="PATH",
                        help="A file whose first line is the password (instead of --api_key).")
    parser.add_argument("--workdir", default=".", metavar="DIR",
                        help="Folder the jobs run in: relative paths in the forms start here, job records go to "
                        "DIR/jobs/ and training runs to DIR/output/ unless --output_dir says otherwise. (default: .)")
    return parser


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port``, or None when it can."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def _key(args) -> str | None:
    """The login password from --api_key or --api_key_file (None when neither is given)."""
    if args.api_key is not None and args.api_key_file is not None:
        raise ValueError("give --api_key or --api_key_file, not both")
    if args.api_key_file is not None:
        try:
            lines = Path(args.api_key_file).expanduser().read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ValueError(f"--api_key_file {args.api_key_file!r}: {exc.strerror or exc}") from exc
        key = lines[0].strip() if lines else ""
        if not key:
            raise ValueError(f"--api_key_file {args.api_key_file!r}: its first line is empty")
        return key
    if args.api_key is not None and not args.api_key:
        raise ValueError("--api_key must not be empty")
    return args.api_key


def webui_command(argv: list[str]) -> int:
    args = webui_parser().parse_args(argv)
    try:
        key = _key(args)
    except ValueError as exc:
        print(f"swiftkit web-ui: error: {exc}", file=sys.stderr)
        return 2
    exposed = [] if is_loopback(args.host) else [f"--host {args.host}"]
    if args.share:
        exposed.append("--share")
    if exposed:
        print(f"swiftkit web-ui: warning: {' and '.join(exposed)} serves the UI beyond this machine; whoever logs "
              "in can run jobs and read files as this user", file=sys.stderr)
        if key is None:
            print(f"swiftkit web-ui: error: {' and '.join(exposed)} needs --api_key KEY or --api_key_file PATH "
                  "(the page then asks for user 'swiftkit' and the key)", file=sys.stderr)
            return 2
    if importlib.util.find_spec("gradio") is None:
        print("swiftkit web-ui: error: gradio is not installed: install swiftkit[webui] "
              "(pip install 'swiftkit[webui]')", file=sys.stderr)
        return 2
    problem = _port_problem(args.host, args.port)
    if problem is not None:
        print(f"swiftkit web-ui: error: cannot listen on {args.host}:{args.port}: {problem}; choose another --port",
              file=sys.stderr)
        return 2
    os.environ.update(OFFLINE_ENV)
    # SIGTERM (a service manager, `kill`) ends the UI as Ctrl-C does: exit handlers stop the servers it started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    from swiftkit.webui.app import serve  # defers gradio

    serve(workdir=args.workdir, lang=args.lang, host=args.host, port=args.port, share=args.share, api_key=key)
    return 0
