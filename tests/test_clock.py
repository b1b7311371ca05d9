"""The display clock on its own: due frames, lateness, re-anchoring, pause."""

import pytest

from engine.clock import REANCHOR_S, Clock


def test_due_index_follows_elapsed_time_fps_and_speed():
    c = Clock(fps=30, speed=2)
    c.anchor(100, now=10.0)
    assert c.due_index(10.0) == 100
    assert c.due_index(10.0 + 1 / 60 - 1e-6) == 100
    assert c.due_index(10.0 + 1 / 60) == 101
    assert c.due_index(11.0) == 160
    assert c.due_time(130) == pytest.approx(10.5)


def test_a_frame_shown_a_little_late_keeps_the_clock():
    c = Clock(fps=30)
    c.anchor(0, now=0.0)
    assert c.showing(3, now=0.15) == pytest.approx(0.05)
    assert c.t0 == 0.0 and c.reanchors == 0


def test_a_frame_more_than_reanchor_late_restarts_the_clock_at_it():
    c = Clock(fps=30)
    c.anchor(0, now=0.0)
    late = c.showing(3, now=0.1 + REANCHOR_S + 0.01)
    assert late > REANCHOR_S and c.reanchors == 1
    assert c.due_index(0.1 + REANCHOR_S + 0.01) == 3  # on time from here on, no burst


def test_pause_stops_the_clock_and_resume_shifts_it():
    c = Clock(fps=10)
    c.anchor(0, now=0.0)
    c.pause(now=1.0)
    assert c.due_index(5.0) == 10 and not c.running
    c.resume(now=5.0)
    assert c.due_index(5.0) == 10 and c.due_index(5.1) == 11


def test_step_while_paused_stands_at_that_frame():
    c = Clock(fps=10)
    c.anchor(0, now=0.0)
    c.pause(now=0.5)
    c.step_to(6, now=2.0)
    assert c.due_index(3.0) == 6
    c.resume(now=3.0)
    assert c.due_index(3.1) == 7
