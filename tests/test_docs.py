"""The README's SDK example runs, as written, against a real server."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_sdk_example_runs(server_factory, tmp_path, capsys, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README lost its SDK example"
    example = blocks[0]
    with server_factory(embedder="local") as running:
        data = tmp_path / "aimem-data"
        data.mkdir()
        (data / "token").write_text(running.token + "\n")
        monkeypatch.chdir(tmp_path)
        exec(compile(example.replace("grpc://127.0.0.1:8815", running.uri), "README", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert "Lisbon" in printed[0], printed
    assert printed[-1] == "1"


def test_readme_names_every_cli_command():
    from aios_memory.client.cli import main

    text = README.read_text()
    for name in main.list_commands(None):  # type: ignore[arg-type]
        assert f"aimem {name}" in text, f"README's CLI table lacks `aimem {name}`"
