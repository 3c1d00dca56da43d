"""The architecture holds: the import contracts of pyproject.toml [tool.importlinter] (arrows point one way, families
reach the server only through serve.sdk, families do not import each other), and no dead code ([tool.vulture])."""
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    lint = Path(sys.executable).with_name("lint-imports")  # installed beside this interpreter with the dev extra
    return subprocess.run([str(lint), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout, result.stdout[-2000:]


def test_a_family_importing_a_server_internal_breaks_the_contract(tmp_path):
    """The check can fail: the same configuration over a copy of the tree with one forbidden import in a family."""
    for package, name in (("serve", "serve"), ("models", "models"), ("export", "export"), ("loadtest", "loadtest"), ("proto", "streamserve_proto")):
        subprocess.run(["cp", "-r", str(ROOT / package), str(tmp_path / name)], check=True)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "models" / "examples" / "sneaky.py").write_text(textwrap.dedent("""
        from serve.dataplane import DataPlane  # a server internal, not serve.sdk
    """))
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "models.examples.sneaky -> serve.dataplane" in result.stdout, result.stdout[-2000:]
    assert "Contracts: 2 kept, 1 broken." in result.stdout


def test_no_dead_code():
    """vulture over the tree, with what only a framework calls ignored in pyproject.toml [tool.vulture]."""
    vulture = Path(sys.executable).with_name("vulture")
    result = subprocess.run([str(vulture)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, "unused code (remove it, or if a framework calls it, add it to [tool.vulture]):\n" + result.stdout[-4000:]


def test_every_module_imports():
    """A moved or deleted name breaks an import that no other test may reach (a CLI, a benchmark): import them all."""
    script = textwrap.dedent("""
        import importlib, pkgutil
        failed = []
        for package in ("serve", "export", "models", "loadtest"):
            for module in pkgutil.walk_packages(importlib.import_module(package).__path__, package + "."):
                if module.name.startswith("loadtest.locust"):  # gevent monkey-patches the process on import
                    continue
                try:
                    importlib.import_module(module.name)
                except Exception as e:
                    failed.append(f"{module.name}: {type(e).__name__}: {e}")
        print("\\n".join(failed))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout[-3000:] + result.stderr[-3000:]
