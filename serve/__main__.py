"""`python -m serve run|config|reload`: serve the model repository, write its Serve config, or have a running
server pick up a new data snapshot without a restart."""
import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import yaml

from .serve_config import build_serve_config, write_serve_config
from .errors import RepositoryError
from .private_files import UnsafeFile, read_private
from .settings import ServerSettings


_ARG_TYPES = {int: int, float: float, bool: lambda text: text.lower() in ("1", "true", "yes", "on")}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m serve", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start the embedded single-node server and stay in the foreground")
    run.add_argument("--config", help="a Serve config YAML to run (default: generated from the repository)")
    run.add_argument("--ready-file", help="write this file once every application is running")
    config = commands.add_parser("config", help="write the Serve config generated from the repository")
    config.add_argument("--output", default="serve_config.yaml")
    config.add_argument("--repository-path", help="where replicas find the repository (e.g. a volume mount)")
    reload = commands.add_parser("reload", help="have the running server redeploy its config (a new snapshot is swapped in, no restart)")
    reload.add_argument("--temp-dir", default=None, help="the server's --temp-dir (default: the settings' temp_dir)")
    reload.add_argument("--timeout", type=float, default=600.0)
    for sub in (run, config):
        for name, field in ServerSettings.model_fields.items():
            if name != "auth_token":  # a secret belongs in the environment, not in shell history
                sub.add_argument(f"--{name.replace('_', '-')}", type=_ARG_TYPES.get(field.annotation, str), default=None, help=field.description)
    args = parser.parse_args(argv)
    if args.command == "reload":
        sys.exit(request_reload(Path(args.temp_dir or ServerSettings().temp_dir), args.timeout))
    overrides = {k: v for k, v in vars(args).items() if k in ServerSettings.model_fields and v is not None}
    settings = ServerSettings(**overrides)
    try:
        if args.command == "config":
            write_serve_config(args.output, settings, args.repository_path)
            print(f"wrote {args.output}")
            return
        from .launcher import run as run_server

        if args.config:
            def load_config():
                return yaml.safe_load(Path(args.config).read_text())
        else:
            def load_config():
                return build_serve_config(settings)
        run_server(settings, load_config, args.ready_file)
    except RepositoryError as e:
        sys.exit(f"error: {e}")


def request_reload(temp_dir: Path, timeout_s: float) -> int:
    """SIGHUP the server that runs with this temp dir and wait for its answer in reload.json."""
    pid_file, status_file = temp_dir / "streamserve.pid", temp_dir / "reload.json"
    try:
        pid = int(read_private(pid_file) or b"")
    except UnsafeFile as e:
        print(f"error: {e}")
        return 2
    except ValueError:
        print(f"error: no running server found ({pid_file} is missing); is `python -m serve run` up with --temp-dir {temp_dir}?")
        return 2
    if not _is_our_server(pid):
        print(f"error: pid {pid} in {pid_file} is not a streamserve server of this user; not signalling it")
        return 2

    def count():
        try:
            return json.loads(read_private(status_file) or b"{}").get("count", 0)
        except (UnsafeFile, ValueError, AttributeError):
            return 0

    before = count()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        print(f"error: the server (pid {pid}) is gone")
        return 2
    deadline = time.monotonic() + timeout_s
    while count() <= before:
        if time.monotonic() > deadline:
            print(f"error: no answer from the server (pid {pid}) after {timeout_s:.0f}s")
            return 1
        time.sleep(0.2)
    status = json.loads(read_private(status_file))
    print(status["message"])
    return 0 if status["ok"] else 1


def _is_our_server(pid: int) -> bool:
    """The pid names a live `serve run` process of this user (a stale or planted pid file names another)."""
    try:
        proc = Path(f"/proc/{pid}")
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        return proc.stat().st_uid == os.getuid() and b"serve" in b" ".join(cmdline) and b"run" in cmdline
    except OSError:
        return False


if __name__ == "__main__":
    main()
