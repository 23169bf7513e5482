"""Atomic output writing."""

import pytest

from microdreamer_core.errors import InputError
from microdreamer_core.io.outputs import atomic_outputs, atomic_path


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert target.read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    with pytest.raises(InputError, match="does not exist"):
        with atomic_path(tmp_path / "nope" / "x.bin"):
            pass


def test_a_file_inside_a_staged_folder_is_written_into_it_and_moves_with_it(tmp_path):
    from microdreamer_core.io.outputs import staged_path

    target = tmp_path / "run"
    with atomic_outputs() as out:
        folder = out.folder(target)
        (folder / "model.ply").write_text("m")
        inside = staged_path(target / "spin.gif")
        assert inside.parent == folder and not target.exists()
        with atomic_outputs() as more:
            more.file(inside).write_text("g")
    assert (target / "spin.gif").read_text() == "g" and (target / "model.ply").read_text() == "m"
    assert staged_path(tmp_path / "elsewhere.gif") == tmp_path / "elsewhere.gif"
