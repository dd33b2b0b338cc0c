"""``dir_bytes`` (the ``data_dir_bytes`` of ``stats``) while the index writers churn files.

tantivy creates and removes temporary files in the keyword index folder as it commits; a
``stats`` call that walked the folder then failed with an internal error when one vanished
between the listing and its ``stat`` (seen once in CI). Here a real thread churns files.
"""

from __future__ import annotations

import threading
from pathlib import Path

from aios_memory.flight_server._files import dir_bytes


def test_files_vanishing_during_the_walk_are_skipped_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "kept.bin").write_bytes(b"x" * 1000)
    churn = tmp_path / "index" / "keyword"
    churn.mkdir(parents=True)
    stop = threading.Event()

    def create_and_remove() -> None:
        n = 0
        while not stop.is_set():
            path = churn / f".tmp{n % 64}"
            path.write_bytes(b"y" * 10)
            path.unlink()
            n += 1

    writer = threading.Thread(target=create_and_remove)
    writer.start()
    try:
        sizes = [dir_bytes(tmp_path) for _ in range(2000)]
    finally:
        stop.set()
        writer.join()
    assert min(sizes) >= 1000 and max(sizes) <= 1000 + 10 * 64
    assert dir_bytes(tmp_path) == 1000
