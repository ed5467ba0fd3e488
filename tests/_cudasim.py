"""Run a test snippet under numba's CUDA simulator in a fresh interpreter.

numba reads NUMBA_ENABLE_CUDASIM when it is first imported, so the numba.cuda backends cannot be simulated
inside the pytest process that already imported numba for the CPU backends. `run_cudasim(code)` runs
`code` with the simulator on, the repository importable, and fails the calling test with the snippet's
stderr when it exits non-zero (write the checks in the snippet as plain asserts)."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cudasim(code: str, timeout: float = 300) -> str:
    """stdout of `code` run with NUMBA_ENABLE_CUDASIM=1; AssertionError carrying stderr if it fails."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    env.pop("WSSS_KERNEL_BACKEND", None)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"CUDA-simulator snippet failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return done.stdout
