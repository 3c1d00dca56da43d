"""Control files (serve/private_files.py): a private directory, no write through a planted symlink, no read of a
file another user could have written."""
import os
import stat

import pytest

from serve.private_files import UnsafeFile, private_dir, read_private, write_private


def test_the_directory_is_created_private_and_a_loose_one_is_tightened(tmp_path):
    fresh = private_dir(tmp_path / "new" / "dir")
    assert stat.S_IMODE(os.lstat(fresh).st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o777)
    os.chmod(loose, 0o1777)
    private_dir(loose)
    assert stat.S_IMODE(os.lstat(loose).st_mode) == 0o700


def test_a_symlink_in_place_of_the_directory_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafeFile, match="not a directory"):
        private_dir(tmp_path / "link")


def test_a_write_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    planted = tmp_path / "streamserve.pid"
    planted.symlink_to(victim)
    write_private(planted, b"123\n")
    assert victim.read_text() == "precious"
    assert not planted.is_symlink() and planted.read_bytes() == b"123\n"
    assert stat.S_IMODE(os.lstat(planted).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_read_refuses_a_symlink_and_returns_none_for_a_missing_file(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text('{"forged": "verdict"}')
    (tmp_path / "admission.json").symlink_to(target)
    with pytest.raises(UnsafeFile):
        read_private(tmp_path / "admission.json")
    assert read_private(tmp_path / "missing") is None
    write_private(tmp_path / "ok.json", b"{}")
    assert read_private(tmp_path / "ok.json") == b"{}"


@pytest.mark.skipif(os.getuid() != 0, reason="changing a file's owner needs root")
def test_a_file_or_directory_of_another_user_is_refused(tmp_path):
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    os.chown(foreign, 12345, 12345)
    with pytest.raises(UnsafeFile, match="not a regular file owned by this user"):
        read_private(foreign)
    other = tmp_path / "other"
    other.mkdir()
    os.chown(other, 12345, 12345)
    with pytest.raises(UnsafeFile, match="belongs to uid 12345"):
        private_dir(other)
