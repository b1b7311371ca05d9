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
