"""What the wheel ships: the compiled ring, type stubs and the py.typed marker."""

import importlib.resources
import importlib.util

import engine


def test_installed_package_ships_extension_stubs_and_marker():
    files = importlib.resources.files("engine")
    assert (files / "py.typed").is_file()
    assert (files / "_ring.pyi").is_file()
    spec = importlib.util.find_spec("engine._ring")
    assert spec.origin.endswith(".so")  # compiled, not the source tree


def test_version_is_single_sourced():
    from importlib.metadata import version

    assert engine.__version__ == version("frame-engine")


def test_metadata_says_linux_only():
    from importlib.metadata import metadata

    classifiers = metadata("frame-engine").get_all("Classifier") or []
    assert "Operating System :: POSIX :: Linux" in classifiers


def test_files_the_project_files_name_exist():
    """A document that pyproject.toml, CMakeLists.txt or the README points to is in
    the repository."""
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in ("pyproject.toml", "CMakeLists.txt", "README.md"):
        with open(os.path.join(root, name)) as f:
            text = f.read()
        for ref in set(re.findall(r"(?<![\w/.-])([\w/.-]+\.md)\b", text)):
            assert os.path.exists(os.path.join(root, ref)), f"{name} names {ref}: not there"


def test_a_source_tree_that_shadows_the_package_says_so(tmp_path):
    """A script run from a checkout imports its engine/ folder, which has no compiled
    ring: one clear ImportError, not ModuleNotFoundError: engine._ring."""
    import os
    import shutil
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shutil.copytree(
        os.path.join(root, "engine"), tmp_path / "engine", ignore=shutil.ignore_patterns("*.so")
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    p = subprocess.run(
        [sys.executable, "-c", "import engine; engine.play"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    if "engine is imported from" not in p.stderr:
        # an editable install's finder comes before the current folder: not shadowed
        assert p.returncode == 0, p.stderr
        return
    assert p.stderr.strip().splitlines()[-1] == (
        f"ImportError: engine is imported from {tmp_path / 'engine'}, a source tree without "
        "the compiled ring: run from another folder, or install it there (pip install -e .)"
    )
