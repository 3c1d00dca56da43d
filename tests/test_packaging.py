"""The package installs cleanly: its command runs from any directory, its package list matches the folders, and its
dependencies are what the code imports — serving's in the base set, training's and the tools' in extras."""
import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OURS = {"serve", "models", "export", "loadtest", "streamserve_proto", "tests", "proto"}
# Declared for what they run, not what is imported: command-line tools, pytest plugins, and what other packages load.
# zttp: uvicorn's HTTP/2 engine, imported by the uvicorn protocol the gRPC ingress builds on (serve/grpc_ingress.py).
NOT_IMPORTED = {"pytest-timeout", "pip-audit", "py-spy", "import-linter", "vulture", "onnxscript", "onnxruntime-gpu", "zttp"}
# What serving runs beyond its imports' closure: where the process starts, and the handlers config.pbtxt names.
SERVING_ROOTS = ["serve.app", "serve.__main__", "serve.launcher", "models.backdoor.scan_worker", "models.backdoor.admission"]


def distribution(requirement: str) -> str:
    return re.split(r"[\[<>=!~;]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def provided_by() -> dict[str, set[str]]:
    """import name -> the distributions (normalised names) that provide it."""
    return {name: {d.lower().replace("_", "-") for d in dists} for name, dists in packages_distributions().items()}


def third_party(names) -> set[str]:
    return {n for n in names if n not in OURS and n not in sys.stdlib_module_names and not n.startswith("_")}


def imported_anywhere() -> set[str]:
    names = set()
    for folder in ("serve", "models", "export", "loadtest", "proto", "tests", "deploy"):
        for file in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text(), str(file))):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return third_party(names)


def imported_by_serving() -> set[str]:
    graph = grimp.build_graph("serve", "models", "streamserve_proto", include_external_packages=True)
    roots = SERVING_ROOTS + [m for m in graph.modules if m.endswith(".serving")]
    reached = set().union(*(graph.find_upstream_modules(r) | {r} for r in roots))
    return third_party(m for m in reached if "." not in m)


def test_serving_needs_only_the_base_dependencies():
    base = {distribution(r) for r in PYPROJECT["project"]["dependencies"]}
    runtime = {distribution(r) for r in PYPROJECT["project"]["optional-dependencies"]["cpu"]}  # or gpu: the same module
    providers = provided_by()
    missing = {name: sorted(providers.get(name, {"?"})) for name in imported_by_serving() if not providers.get(name, set()) & (base | runtime)}
    assert not missing, f"serving imports these, but the base dependencies do not provide them: {missing}"


def test_every_import_is_declared_and_every_declaration_imported():
    groups = {"base": PYPROJECT["project"]["dependencies"], **PYPROJECT["project"]["optional-dependencies"]}
    declared = {distribution(r) for requirements in groups.values() for r in requirements}
    providers = provided_by()
    imports = imported_anywhere()
    undeclared = {name: sorted(providers.get(name, {"?"})) for name in imports if not providers.get(name, set()) & declared}
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
    used = set().union(*(providers.get(name, set()) for name in imports))
    unused = declared - used - NOT_IMPORTED
    assert not unused, f"declared but never imported (drop them, or say why in NOT_IMPORTED): {sorted(unused)}"


def test_the_package_list_matches_the_folders():
    folders = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in ("serve", "models", "export", "loadtest", "proto")
               for p in (ROOT / top).rglob("__init__.py")}
    listed = {PYPROJECT["tool"]["setuptools"]["package-dir"].get(p, p).replace("/", ".") for p in PYPROJECT["tool"]["setuptools"]["packages"]}
    assert listed == folders


def test_the_command_runs_from_any_directory(tmp_path):
    command = Path(sys.executable).with_name("streamserve")
    result = subprocess.run([str(command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "run" in result.stdout and "reload" in result.stdout, result.stderr[-2000:]
    result = subprocess.run([str(command), "run", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--repository" in result.stdout, result.stderr[-2000:]
    # Ray's gRPC proxy imports the servicer function by name in its own process: it must resolve to ours anywhere.
    probe = "import streamserve_proto, importlib; print(importlib.import_module('streamserve_proto').SERVICER_FUNCTION)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "streamserve_proto.add_servicer_to_server", result.stderr[-2000:]
