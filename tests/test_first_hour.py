"""What a new user hits in the first hour (issue 9): a script that names itself as
the analysis, errors they can read, results with numpy in them, the Python API
with functions, and a summary that adds up."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers import our_segments, tool, wait_until

import engine
from engine.analysis import AnalysisError, resolve

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # player_funcs, as the analyzers import it (PYTHONPATH below)

import player_funcs  # noqa: E402


def env(**extra):
    e = dict(os.environ, PYTHONPATH=HERE, SDL_VIDEODRIVER="dummy")
    e.update(extra)
    return e


def play(*args, timeout=120, cwd=None):
    return subprocess.run(
        [tool("frame-engine"), "play", "--headless", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(),
        cwd=cwd,
    )


def play_stats(tmp_path, *args):
    path = tmp_path / "stats.json"
    p = play(*args, "--stats-json", str(path))
    assert p.returncode == 0, p.stderr
    return p, json.loads(path.read_text())


def segments_of(pid):
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"fe-{pid}-")]


# ---- 1. a script that names itself as the analysis --------------------------


def run_script(tmp_path, body, timeout=60):
    """Run a script in its own session; whatever happens, its whole group is gone
    afterwards. Returns (returncode, stderr, segments left by any of its pids)."""
    script = tmp_path / "myscript.py"
    script.write_text(textwrap.dedent(body))
    before = our_segments()
    p = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env(PYTHONPATH=str(tmp_path)),
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        err += "\n(timed out: the script kept running)"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # anything of its group still alive
        except ProcessLookupError:
            pass
    new = our_segments() - before
    for name in new:  # remove, then report
        os.unlink(os.path.join("/dev/shm", name))
    return p.returncode, err, sorted(new)


def test_a_script_that_names_itself_as_the_analysis_is_refused(tmp_path):
    code, err, left = run_script(
        tmp_path,
        """
        import engine

        def fn(frame, out, ctx):
            return None

        engine.play("demo", analyze="myscript:fn", frames=30, untimed=True,
                    headless=True, quiet=True)
        """,
    )
    assert code != 0, err
    assert "(timed out" not in err
    last = err.strip().splitlines()[-1]
    assert "MainGuardError" in last and 'if __name__ == "__main__":' in last, err
    assert "importing myscript" in last
    assert left == []


def test_a_run_inside_a_child_process_is_refused(tmp_path):
    """The guard in the children themselves: a module whose import starts a run
    only in an analyzer (where the parent's import did not)."""
    (tmp_path / "sneaky.py").write_text(
        textwrap.dedent(
            """
            import os
            import engine

            def fn(frame, out, ctx):
                return None

            if os.environ.get("FRAME_ENGINE_CHILD"):
                engine.play("demo", frames=5, untimed=True, headless=True, quiet=True)
            """
        )
    )
    p = subprocess.run(
        [tool("frame-engine"), "play", "--headless", "--untimed", "--frames", "20"]
        + ["--analyze", "sneaky:fn"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env(PYTHONPATH=str(tmp_path)),
    )
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "inside frame-engine's fe-analyze-1 process" in last, p.stderr
    assert 'if __name__ == "__main__":' in last


def test_a_script_with_the_guard_runs(tmp_path):
    code, err, left = run_script(
        tmp_path,
        """
        import engine

        def fn(frame, out, ctx):
            return {"i": ctx.frame_index}

        if __name__ == "__main__":
            s = engine.play("demo", analyze="myscript:fn", frames=12, untimed=True,
                            headless=True, quiet=True, workers=1)
            assert s["frames_analyzed"] == 12, s
        """,
    )
    assert code == 0, err
    assert left == []


# ---- 2 and 11. the summary adds up, and quitting is not damage -----------------


def test_interrupting_says_nothing_of_damage_and_accounts_for_every_frame(tmp_path):
    """Ctrl-C half way through the demo (timed, so it is still playing)."""
    stats = tmp_path / "s.json"
    p = subprocess.Popen(
        # at half speed: 20 s of playing, so Ctrl-C lands while it plays
        [tool("frame-engine"), "play", "--headless", "--speed", "0.5", "--stats-json", str(stats)],
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    rings = []

    def opened():  # the segment exists a moment before it is a ring
        try:
            rings.append(engine.Ring.open(segments_of(p.pid)[0]))
        except (IndexError, ValueError, FileNotFoundError):
            return False
        return True

    wait_until(opened, "the run's ring")
    with rings[0] as ring:  # playing: frames have gone through the display
        wait_until(lambda: ring.stats(2)["items"] >= 10, "10 frames through the display")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "damaged" not in err and "ends early" not in err
    s = json.loads(stats.read_text())
    assert s["ended"] == "interrupted"
    assert s["decoded_frames"] >= s["frames_read"] > 0
    assert (
        s["frames_shown"] + s["dropped_late"] + s["discarded_seek"] + s["left_unplayed"]
        == s["frames_read"]
    )
    lines = err.strip().splitlines()
    assert lines[-1] == "frame-engine: interrupted"
    assert f"{s['frames_read']} frames read: {s['frames_shown']} shown" in lines[-2]


def test_the_summary_accounts_for_every_frame_read(tmp_path):
    p, s = play_stats(tmp_path, "--untimed", "--frames", "30", "--analyze", "edges")
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith("frame-engine: 30 frames read: 30 shown, 0 dropped late; ")
    assert s["left_unplayed"] == 0 and s["ended"] == "end"
    # the steady rate: from the first frame shown to the last, not from start-up
    assert f"; {s['fps']['display_steady']:.1f} fps in" in line


# ---- 5. --on-error skip tells what went wrong ----------------------------------


def test_on_error_skip_warns_once_per_distinct_error_and_keeps_them(tmp_path):
    stats = tmp_path / "stats.json"
    p = play(
        "--stats-json",
        str(stats),
        "--untimed",
        "--frames",
        "20",
        "--analyze",
        "player_funcs:keyerror",
        "--on-error",
        "skip",
        "--workers",
        "1",
    )
    assert p.returncode == 1  # every frame failed (below)
    s = json.loads(stats.read_text())
    warnings = [line for line in p.stderr.splitlines() if "raised KeyError" in line][:2]
    assert warnings == [
        "frame-engine: frame 0: analysis 'player_funcs:keyerror' raised KeyError: 'even' "
        "(frame shown unanalyzed; --on-error skip counts the same error again silently)",
        "frame-engine: frame 1: analysis 'player_funcs:keyerror' raised KeyError: 'odd' "
        "(frame shown unanalyzed; --on-error skip counts the same error again silently)",
    ]
    assert s["analysis_errors"] == 20 and s["frames_shown"] == 20
    assert s["errors"] == [
        {"error": "raised KeyError: 'even'", "count": 10, "first_frame": 0},
        {"error": "raised KeyError: 'odd'", "count": 10, "first_frame": 1},
    ]
    assert "; 20 analysis errors skipped" in p.stderr.strip().splitlines()[-2]


# ---- 6. results with numpy in them ------------------------------------------------


def test_numpy_scalars_and_small_arrays_are_plain_results(tmp_path):
    results = tmp_path / "r.jsonl"
    p = play(
        "--untimed",
        "--frames",
        "3",
        "--analyze",
        "player_funcs:numpy_result",
        "--results",
        str(results),
    )
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 3
    r = lines[0]["result"]
    assert isinstance(r["n"], int) and isinstance(r["mean"], float)
    assert isinstance(r["flag"], bool) and isinstance(r["row"], list) and len(r["row"]) == 8


@pytest.mark.parametrize(
    "fn, said",
    [
        ("returns_image", "returned a uint8 array of shape (720, 1280, 3); expected a dict"),
        ("returns_tuple", "returned a tuple (0, 1.5); expected a dict"),
        ("not_json", "returned a uint8 array of shape (720, 1280, 3) in its result"),
    ],
)
def test_a_result_that_cannot_be_stored_says_what_was_returned(fn, said):
    p = play("--untimed", "--frames", "5", "--analyze", f"player_funcs:{fn}")
    assert p.returncode == 1
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"frame-engine: demo: frame 0: analysis 'player_funcs:{fn}' {said}")
    assert "raised" not in last and "Traceback" not in p.stderr


# ---- 7. the Python API takes functions; errors come back with their cause ---------


def test_play_and_frames_take_a_function_from_a_module():
    stats = engine.play(
        "demo",
        analyze=player_funcs.number,
        untimed=True,
        frames=6,
        headless=True,
        quiet=True,
        workers=1,
    )
    assert stats["frames_analyzed"] == 6 and stats["analysis"] == "player_funcs:number"
    seen = [
        (f.index, f.pts, f.result["pixels"], f.status)
        for f in engine.frames("demo", analyze=player_funcs.number, frames=4, workers=1)
    ]
    assert seen == [(i, pytest.approx(i / 30), i, "ok") for i in range(4)]
    for image, result in engine.frames("demo", frames=1, workers=1):  # still a pair
        assert image.shape == (720, 1280, 3) and result is None


def test_functions_the_analyzers_cannot_import_are_refused():
    def local(frame, out, ctx):
        return None

    with pytest.raises(AnalysisError, match="a lambda cannot be sent"):
        resolve(lambda frame, out, ctx: None)
    with pytest.raises(AnalysisError, match="defined inside a function"):
        resolve(local)
    main = type(local)(local.__code__, {})
    main.__module__, main.__qualname__ = "__main__", "fn"
    with pytest.raises(AnalysisError, match="defined in the main script"):
        resolve(main)
    with pytest.raises(engine.AnalysisError, match="a lambda"):  # exported, and from play
        engine.play("demo", analyze=lambda f, o, c: None, frames=2, headless=True)


def test_an_exception_in_frames_reaches_the_caller_with_its_cause():
    seen = []
    with pytest.raises(engine.AnalysisFailed) as e:
        for f in engine.frames("demo", analyze=player_funcs.user_error, frames=10, workers=1):
            seen.append(f.index)
    assert seen == [0, 1, 2, 3, 4]
    assert e.value.frame == 5
    assert "raised UserError: bad frame 5" in str(e.value)
    cause = e.value.__cause__
    assert isinstance(cause, player_funcs.UserError) and str(cause) == "bad frame 5"
    assert "in user_error" in str(cause.__cause__)  # the analyzer's traceback, as text
    assert isinstance(e.value, engine.RunError) and isinstance(e.value, engine.FrameEngineError)


def test_error_classes_are_exported_lazily():
    code = (
        "import sys, engine\n"
        "from engine import Ring\n"
        "assert 'cv2' not in sys.modules and 'pygame' not in sys.modules, 'eager'\n"
        "assert issubclass(engine.SourceError, engine.FrameEngineError)\n"
        "assert issubclass(engine.AnalysisError, engine.FrameEngineError)\n"
        "assert issubclass(engine.AnalysisFailed, engine.RunError)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env())
    assert p.returncode == 0, p.stderr


# ---- 8. did you mean ------------------------------------------------------------------


def test_a_near_miss_suggests_the_builtin():
    p = play("--analyze", "edge")
    assert p.returncode == 1
    assert p.stderr.strip().endswith("not module:function; did you mean edges?")
    p = play("--analyze", "Flow")
    assert p.stderr.strip().endswith("did you mean flow?")
    p = play("--analyze", "sharpen")
    assert "did you mean" not in p.stderr


def test_skip_with_every_frame_failing_exits_non_zero(tmp_path):
    p = play(
        "--untimed", "--frames", "6", "--analyze", "player_funcs:keyerror", "--on-error", "skip"
    )
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1] == (
        "frame-engine: analysis 'player_funcs:keyerror' failed on every frame: "
        "frame 0: raised KeyError: 'even'"
    )


def test_nan_in_a_result_is_strict_json_null(tmp_path):
    results = tmp_path / "r.jsonl"
    p = play(
        "--untimed",
        "--frames",
        "2",
        "--analyze",
        "player_funcs:nan_result",
        "--results",
        str(results),
    )
    assert p.returncode == 0, p.stderr
    line = results.read_text().splitlines()[0]
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in {line}"))["result"] == {
        "mean": None,
        "top": None,
        "ok": 1.5,
        "list": [None, 2.0],
    }


# ---- what a new user's trial found -------------------------------------------------


@pytest.fixture
def small_clip(tmp_path):
    from engine.sources import write_demo_clip

    path = tmp_path / "clip.avi"
    write_demo_clip(path, frames=30, size=(320, 240), fps=30.0)
    return path


@pytest.mark.parametrize(
    "option, target, said",
    [
        ("--output", "source", "--output {p}: is the source: it would be overwritten"),
        ("--results", "source", "--results {p}: is the source: it would be overwritten"),
        ("--stats-json", "source", "--stats-json {p}: is the source: it would be overwritten"),
    ],
)
def test_an_output_that_is_the_source_is_refused_and_the_source_kept(
    small_clip, option, target, said
):
    before = small_clip.read_bytes()
    p = play(str(small_clip), option, str(small_clip))
    assert p.returncode == 2
    assert p.stderr.strip() == "frame-engine: " + said.format(p=small_clip)
    assert small_clip.read_bytes() == before


def test_two_outputs_that_are_one_file_and_a_format_we_cannot_write_are_refused(tmp_path):
    same = tmp_path / "x.json"
    p = play("--results", str(same), "--stats-json", str(same))
    assert p.returncode == 2 and "is --results: it would be overwritten" in p.stderr
    p = play("--output", str(tmp_path / "x.gif"))
    assert p.returncode == 2
    assert p.stderr.strip() == (
        f"frame-engine: --output {tmp_path / 'x.gif'}: frame-engine writes "
        ".mp4, .m4v, .mov, .mkv, .webm, .avi files"
    )
    assert not (tmp_path / "x.gif").exists()


@pytest.mark.parametrize(
    "options, said",
    [
        ({"frames": 2.5}, "frames=2.5: must be a whole number or None, not float"),
        ({"max_memory": "1G"}, "max_memory='1G': must be a whole number, not str"),
        ({"speed": "fast"}, "speed='fast': must be a number, not str"),
        ({"live": "no"}, "live='no': must be True or False or None, not str"),
    ],
)
def test_python_options_of_the_wrong_type_are_one_clear_error(options, said):
    with pytest.raises(engine.RunError) as e:
        engine.play("demo", headless=True, quiet=True, **options)
    assert str(e.value) == said


def test_start_is_the_frame_on_screen_at_that_time(small_clip):
    from engine.options import PlayOptions
    from engine.supervisor import Run

    for start, frame in ((0.05, 1), (0.99, 29), (0.1, 3)):
        assert Run(PlayOptions(str(small_clip), start=start)).start_frame == frame


def test_sigterm_to_a_script_exits_143_without_a_traceback(tmp_path):
    script = tmp_path / "term.py"
    script.write_text(
        "import os, signal, threading, time, engine\n"
        "def term():  # once the run is under way (its ring exists: play() handles TERM)\n"
        "    while not any(n.startswith(f'fe-{os.getpid()}-') for n in os.listdir('/dev/shm')):\n"
        "        time.sleep(0.01)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=term, daemon=True).start()\n"
        "engine.play('demo', analyze='edges', headless=True, quiet=True, speed=0.5)\n"
    )
    p = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env(), timeout=120
    )
    assert p.returncode == 143 and "Traceback" not in p.stderr, p.stderr
