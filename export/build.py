"""Build the model repository: `python -m export.build [--repository model_repository] [--only NAME ...]`.

Each model is written all-or-nothing; an existing repository is rebuilt model by model.
"""
import argparse
import time
from pathlib import Path

from models.examples import handlers, heat1d, simple

from . import backdoor, caption, digits, graph, iqa, koopman, shortcut, video
from .repository import write_model


def build_examples(root: Path) -> None:
    for example in (simple, heat1d):
        write_model(root, example.NAME, example.CONFIG, {1: ("model.onnx", example.build().SerializeToString())}, example.CARD)
    for name, config in handlers.MODELS.items():  # python-backend examples: the version folder holds no file
        write_model(root, name, config, {1: {}}, handlers.CARD.format(name=name))


BUILDERS = {
    "examples": build_examples, "digits": digits.build, "shortcut": shortcut.build, "caption": caption.build,
    "koopman": koopman.build, "iqa": iqa.build, "graph": graph.build, "video": video.build, "backdoor": backdoor.build,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS), help="build only these groups")
    args = parser.parse_args(argv)
    for name in args.only or BUILDERS:
        started = time.perf_counter()
        print(f"[build] {name} ...", flush=True)
        BUILDERS[name](args.repository)
        print(f"[build] {name} done in {time.perf_counter() - started:.1f}s", flush=True)
    print(f"[build] repository ready at {args.repository.resolve()}")


if __name__ == "__main__":
    main()
