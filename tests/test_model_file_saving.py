"""Model files as a user's file system has them (issue 13, item 7): ``save`` gives a new file
the mode ``open`` would and keeps an existing file's mode, owner and group, and writes through
symlinks to their target."""

import os
import stat

import pytest

import fastnn
from fastnn import MLP

# ---------------------------------------------------------------------------------------
# item 7: save keeps the file's mode (owner, group) and writes through symlinks
# ---------------------------------------------------------------------------------------


@pytest.fixture
def umask():
    """Set the process's umask for the test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o027])
def test_new_file_gets_the_mode_open_gives(tmp_path, umask, mask):
    umask(mask)
    reference = tmp_path / "by-open"
    with open(reference, "wb"):
        pass
    MLP(3, 4, 2, random_state=0).save(tmp_path / "m.npz")
    assert _mode(tmp_path / "m.npz") == _mode(reference)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o444, 0o664, 0o600, 0o755])
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_existing_file_keeps_its_mode(tmp_path, umask, mode, mask):
    umask(mask)
    path = tmp_path / "m.npz"
    MLP(3, 4, 2, random_state=0).save(path)
    os.chmod(path, mode)
    other = MLP(3, 6, 2, random_state=1)
    other.save(path)
    assert _mode(path) == mode
    assert fastnn.load(path).layers[0].n_out == 6


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="changing a file's owner needs root")
def test_existing_file_keeps_its_owner_and_group(tmp_path):
    path = tmp_path / "m.npz"
    MLP(3, 4, 2, random_state=0).save(path)
    os.chown(path, 12345, 23456)
    os.chmod(path, 0o2640)  # set-group-id too: chown would clear it if done after chmod
    MLP(3, 6, 2, random_state=1).save(path)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (12345, 23456, 0o2640)


def test_save_writes_through_a_symlink(tmp_path):
    v1 = tmp_path / "v1.npz"
    MLP(3, 4, 2, random_state=0).save(v1)
    os.chmod(v1, 0o640)
    current = tmp_path / "current.npz"
    current.symlink_to("v1.npz")
    new = MLP(3, 6, 2, random_state=1)
    new.save(current)
    assert current.is_symlink() and os.readlink(current) == "v1.npz"
    assert fastnn.load(v1).layers[0].n_out == 6  # the target has the new model
    assert _mode(v1) == 0o640
    assert sorted(os.listdir(tmp_path)) == ["current.npz", "v1.npz"]


def test_save_through_a_chain_of_links_into_another_folder(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "app").mkdir()
    target = tmp_path / "models" / "v2.npz"
    MLP(3, 4, 2, random_state=0).save(target)
    (tmp_path / "models" / "latest.npz").symlink_to("v2.npz")
    link = tmp_path / "app" / "model.npz"
    link.symlink_to(os.path.join("..", "models", "latest.npz"))
    MLP(3, 7, 2, random_state=1).save(link)
    assert link.is_symlink() and (tmp_path / "models" / "latest.npz").is_symlink()
    assert fastnn.load(target).layers[0].n_out == 7
    assert os.listdir(tmp_path / "app") == ["model.npz"]  # no temporary left anywhere
    assert sorted(os.listdir(tmp_path / "models")) == ["latest.npz", "v2.npz"]


def test_save_through_a_dangling_symlink_creates_its_target(tmp_path, umask):
    umask(0o022)
    link = tmp_path / "current.npz"
    link.symlink_to("v3.npz")
    MLP(3, 4, 2, random_state=0).save(link)
    assert link.is_symlink()
    assert _mode(tmp_path / "v3.npz") == 0o644
    assert fastnn.load(tmp_path / "v3.npz").layers[0].n_out == 4
