"""`python -m serve run|config`: serve the model repository, or write its Serve config."""
import argparse
import sys
from pathlib import Path

import yaml

from .config import build_serve_config, write_serve_config
from .errors import RepositoryError
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
    for sub in (run, config):
        for name, field in ServerSettings.model_fields.items():
            if name != "auth_token":  # a secret belongs in the environment, not in shell history
                sub.add_argument(f"--{name.replace('_', '-')}", type=_ARG_TYPES.get(field.annotation, str), default=None, help=field.description)
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in ServerSettings.model_fields and v is not None}
    settings = ServerSettings(**overrides)
    try:
        if args.command == "config":
            write_serve_config(args.output, settings, args.repository_path)
            print(f"wrote {args.output}")
            return
        from .launcher import run as run_server

        serve_config = yaml.safe_load(Path(args.config).read_text()) if args.config else build_serve_config(settings)
        run_server(settings, serve_config, args.ready_file)
    except RepositoryError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
