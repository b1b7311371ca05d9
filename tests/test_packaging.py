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
