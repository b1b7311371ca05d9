"""Build the C core with its C tests (plain, ThreadSanitizer, AddressSanitizer +
UBSan) and run them with ctest, and the plain build again with membarrier off.
Needs cmake and a C compiler, nothing else."""

import os
import subprocess

import pytest
from helpers import tool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# flavour: (-DENGINE_SANITIZE, build folder, environment).  "fenced" runs the plain
# build with FE_NO_MEMBARRIER=1: every wake fences, the fallback of kernels that
# refuse membarrier.
FLAVOURS = {
    "plain": ("", "plain", {}),
    "tsan": ("thread", "tsan", {}),
    "asan-ubsan": ("address,undefined", "asan-ubsan", {}),
    "fenced": ("", "plain", {"FE_NO_MEMBARRIER": "1"}),
}


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout[-8000:]}\n{p.stderr[-8000:]}"
    return p.stdout


@pytest.mark.timeout(900)
@pytest.mark.parametrize("flavour", FLAVOURS)
def test_c_suite(flavour):
    cmake = tool("cmake")
    sanitize, folder, extra_env = FLAVOURS[flavour]
    build = os.path.join(ROOT, "build", f"ctest-{folder}")
    gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={tool('ninja')}"]
    run(
        [
            cmake,
            "-S",
            ROOT,
            "-B",
            build,
            *gen,
            f"-DENGINE_SANITIZE={sanitize}",
            "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
        ]
    )
    run([cmake, "--build", build, "-j2"])
    ctest = [tool("ctest"), "--test-dir", build, "--output-on-failure", "--no-tests=error"]
    if flavour == "tsan":
        # ThreadSanitizer needs a fixed address-space layout on kernels with high
        # mmap randomisation; setarch -R turns randomisation off for ctest and its tests.
        ctest = ["setarch", os.uname().machine, "-R", *ctest]
    env = dict(
        os.environ,
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1",
        ASAN_OPTIONS="detect_leaks=1:abort_on_error=0",
        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
        **extra_env,
    )
    out = run(ctest, env=env)
    assert "100% tests passed" in out, out[-4000:]
