"""Build the model repository: `python -m export.build [--repository model_repository] [--only NAME ...]`.

Each family writes its own models (`models/<family>/export.py`, a `build(root)` function); each model is
written all-or-nothing, so an existing repository is rebuilt model by model.
"""
import argparse
import time
from importlib import import_module
from pathlib import Path

from tqdm import tqdm

# Build order: the cheap ones first, so a broken environment shows before the long exports.
FAMILIES = ["examples", "digits", "shortcut", "augment", "koopman", "iqa", "graph", "video", "backdoor"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--only", nargs="*", choices=FAMILIES, help="build only these families")
    args = parser.parse_args(argv)
    families = tqdm(args.only or FAMILIES, desc="families", unit="family", disable=None)  # a bar on a terminal only
    for family in families:
        started = time.perf_counter()
        families.set_postfix_str(family)
        tqdm.write(f"[build] {family} ...")
        import_module(f"models.{family}.export").build(args.repository)
        tqdm.write(f"[build] {family} done in {time.perf_counter() - started:.1f}s")
    print(f"[build] repository ready at {args.repository.resolve()}")


if __name__ == "__main__":
    main()
