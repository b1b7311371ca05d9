"""Kill trials (bench/soak.py): each kind of fault once, at a moment drawn from a
fixed seed; `python bench/soak.py --trials N` runs them at length."""

import importlib.util
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _soak():
    spec = importlib.util.spec_from_file_location("soak", os.path.join(ROOT, "bench", "soak.py"))
    soak = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = soak  # dataclasses look their module up there
    spec.loader.exec_module(soak)
    return soak


soak = _soak()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return soak.make_clip(str(tmp_path_factory.mktemp("soak")))


@pytest.mark.trials
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", soak.KINDS)
def test_kill_trial(kind, clip, tmp_path):
    seed = 20261127 + soak.KINDS.index(kind)
    t = soak.run_trial(kind, seed=seed, clip=clip, folder=str(tmp_path))
    assert t.ok, t.line() + "\n" + t.stderr[-2000:]
    if kind == "kill-parent":
        assert t.returncode == -9
    elif kind in ("term", "int") and t.returncode != 0:
        # stopped, and counted (the signal may come as the last frames are shown)
        assert t.stats and t.stats["ended"] in ("terminated", "interrupted")
        assert t.stats["frames_shown"] <= soak.CLIP_FRAMES


def test_a_trial_sees_a_leak(clip, tmp_path, monkeypatch):
    """The checks can fail: a parent killed without `frame-engine clean` leaves its
    segment, and the trial says so."""
    monkeypatch.setattr(soak, "frame_engine_clean", lambda: None)
    t = soak.run_trial("kill-parent", seed=1, clip=clip, folder=str(tmp_path))
    assert any(p.startswith("leak: segments left") for p in t.problems), t.line()
