"""`python -m runtime.web [--host 127.0.0.1] [--port 8765] [--config PATH] [--token T]`.

Serves the dashboard with uvicorn. It listens on loopback unless told otherwise; any
other address needs a token (`--token` or `RSX_WEB_TOKEN`), and without one the command
refuses to start. On loopback without a token, only requests addressed to a loopback host
name are answered, so a web page cannot reach the dashboard through DNS rebinding. A bad
argument, config or database problem, or a port that cannot be bound is one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from collections.abc import Sequence

from runtime import arguments
from runtime.cli import UsageError, fail, run_command
from runtime.config import load_config
from runtime.text import escape_controls

PROG = "python -m runtime.web"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def port(text: str) -> int:
    """A TCP port number, 0 to 65535 (an argparse `type=`)."""
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise argparse.ArgumentTypeError(
            f"invalid port '{escape_controls(text)}': use a number from 0 to 65535"
        )
    return int(text)


def listen(host: str, number: int) -> socket.socket:
    """A listening socket on `host:number`; `UsageError` if it cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), number))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{number}: {exc.strerror or exc}") from None
    return sock


def parser() -> arguments.Parser:
    parser = arguments.Parser(prog=PROG, description="Serve the operators' dashboard.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback)")
    parser.add_argument("--port", type=port, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--token", help="require this token (default: RSX_WEB_TOKEN); needed off loopback"
    )
    arguments.add_config(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    token = args.token or os.environ.get("RSX_WEB_TOKEN") or None
    if token is None and not is_loopback(args.host):
        return fail(
            PROG,
            f"listening on {escape_controls(args.host)}, which is not a loopback address, "
            "needs a token: pass --token or set RSX_WEB_TOKEN",
        )

    def body() -> int:
        import uvicorn

        from runtime.store import Store
        from runtime.web.app import create_app

        config = load_config(args.config)
        store = Store(config)
        store.ensure_schema()
        hosts = None if token else sorted({*LOOPBACK_NAMES, f"[{args.host}]", args.host})
        app = create_app(config, store=store, token=token, allowed_hosts=hosts)
        sock = listen(args.host, args.port)
        bound = sock.getsockname()[1]
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving the dashboard on http://{shown}:{bound}/", flush=True)
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        )
        server.run(sockets=[sock])
        return 0

    return run_command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
