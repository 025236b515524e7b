"""``automaster serve [--port 8765] [--host 127.0.0.1] [--open]``: the local web app.

Prints the address with its session token and serves until Ctrl-C; every job's files
are removed at shutdown. Needs the ``web`` extra (Starlette, uvicorn, python-multipart):
without it, one line says how to install it (exit status 2).
"""

from __future__ import annotations

import argparse
import math
import socket
import sys
from typing import Sequence

from automaster.errors import UserError, one_line

INSTALL_HINT = "pip install 'automaster[web]'"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see automaster serve --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="automaster serve",
                description="Start the local web app: drop a mix, compare the master with the "
                            "original at equal loudness, adjust, download.")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any "
                   "free port)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--open", action="store_true", help="open the page in the web browser")
    p.add_argument("--max-upload-mb", type=float, default=1024.0, metavar="MB",
                   help="largest upload accepted (default 1024)")
    p.add_argument("--max-jobs", type=int, default=2, metavar="N",
                   help="mastering jobs run at once; more wait (default 2)")
    p.add_argument("--ttl-minutes", type=float, default=120.0, metavar="MIN",
                   help="remove a job's files after it has not been looked at for this long "
                        "(default 120)")
    return p


def missing_extra() -> str | None:
    """The name of the first missing web dependency, or None."""
    import importlib.util

    for mod in ("starlette", "uvicorn", "python_multipart"):
        if importlib.util.find_spec(mod) is None:
            return mod
    return None


def url_for(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host in ("::", "[::]") \
        else (f"[{host}]" if ":" in host and not host.startswith("[") else host)
    return f"http://{shown}:{port}/?token={token}"


def main(argv: Sequence[str] | None = None) -> int:
    def err(message: str) -> int:
        print(f"automaster: error: {one_line(message)}", file=sys.stderr, flush=True)
        return 2

    try:
        args = build_parser().parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # --help
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    except UserError as e:
        return err(str(e))
    if not 0 <= args.port <= 65535:
        return err(f"--port must be between 0 and 65535, got {args.port}")
    if not args.max_upload_mb > 0 or not args.max_jobs >= 1 or not args.ttl_minutes > 0:
        return err("--max-upload-mb and --ttl-minutes must be positive, --max-jobs at least 1")
    if not math.isfinite(args.max_upload_mb):
        return err(f"--max-upload-mb must be a finite number of MB, got {args.max_upload_mb}")
    missing = missing_extra()
    if missing:
        return err(f"automaster serve needs the web extra ({missing} is not installed): "
                   f"{INSTALL_HINT}")

    import uvicorn

    from automaster.web.app import create_app
    from automaster.web.security import new_token

    host = args.host.strip("[]") if args.host.startswith("[") else args.host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, args.port))
        sock.listen(128)
    except OSError as e:
        return err(f"cannot listen on {args.host}:{args.port} ({one_line(e)})")
    port = sock.getsockname()[1]
    token = new_token()
    app = create_app(token=token, host=host, port=port,
                     max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                     max_running=args.max_jobs, ttl_s=args.ttl_minutes * 60.0)
    url = url_for(host, port, token)
    print(f"automaster serve: open {url}", flush=True)
    print("automaster serve: Ctrl-C stops the server and removes every job's files",
          flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"automaster serve: note: listening on {args.host}, not only this machine; "
              f"anyone who has the address with its token can use it", file=sys.stderr,
              flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the
    # handler it found: make that a no-op, so stopping the server is a normal exit (0)
    import signal

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            s = getattr(signal, name)
            previous[s] = signal.signal(s, lambda signum, frame: None)
    try:
        server.run(sockets=[sock])
    finally:
        app.jobs.close()
        sock.close()
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
    print("automaster serve: stopped; every job's files are removed", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
