"""Model files as a user's file system has them (issue 13, items 7 and 8): ``save`` gives a
new file the mode ``open`` would and keeps an existing file's mode, owner and group, writes
through symlinks to their target, and the temporary file of a save killed with SIGKILL is
removed by the next save to the same target once its process is gone."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

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


# ---------------------------------------------------------------------------------------
# item 8: the temporary file of a save killed with SIGKILL is found and removed
# ---------------------------------------------------------------------------------------

_SAVING_FOREVER = textwrap.dedent("""
    import sys
    import fastnn
    model = fastnn.MLP(1000, 2000, 10, dtype="float64", random_state=0)  # a 16 MB file
    print("saving", flush=True)
    while True:
        model.save(sys.argv[1])
""")

_STUCK_IN_SAVE = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnn
    real_savez = np.savez
    def savez_then_wait(file, **arrays):  # the file written, not yet renamed: wait there
        real_savez(file, **arrays)
        file.flush()
        print("written", flush=True)
        sys.stdin.read()
    np.savez = savez_then_wait
    fastnn.MLP(3, 4, 2, random_state=0).save(sys.argv[1])
""")


def _child(script, target):
    return subprocess.Popen([sys.executable, "-c", script, str(target)],
                            stdout=subprocess.PIPE, stdin=subprocess.PIPE)


def _temporaries(folder):
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and the pid check are POSIX")
def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    target = tmp_path / "m.npz"
    # kill -9 a process saving a 16 MB model again and again while its temporary file
    # exists, until a kill leaves one behind (most of a save's time is writing it)
    for _ in range(20):
        before = set(_temporaries(tmp_path))
        child = _child(_SAVING_FOREVER, target)
        assert child.stdout.readline() == b"saving\n"
        while not set(_temporaries(tmp_path)) - before:  # until this child's save writes
            assert child.poll() is None
            time.sleep(0.001)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stdin.close()
        if _temporaries(tmp_path):
            break
    left = _temporaries(tmp_path)
    assert left and all(name.startswith(".m.npz.fastnn-") for name in left)
    # one of them made a dead process's temporary of another target: it must stay
    other = left[0].replace(".m.npz.", ".other.npz.", 1)
    os.rename(tmp_path / left[0], tmp_path / other)
    # a save stuck before its rename, in a live process: its temporary file is not touched
    # (that save itself removes the dead ones of m.npz)
    stuck = _child(_STUCK_IN_SAVE, target)
    try:
        assert stuck.stdout.readline() == b"written\n"
        live = [name for name in _temporaries(tmp_path) if f"-{stuck.pid}-" in name]
        assert len(live) == 1
        assert _temporaries(tmp_path) == sorted(live + [other])
        MLP(3, 5, 2, random_state=1).save(target)
        assert _temporaries(tmp_path) == sorted(live + [other])
        assert fastnn.load(target).layers[0].n_out == 5
    finally:
        stuck.kill()
        stuck.wait()
        stuck.stdout.close()
        stuck.stdin.close()
    # now it is gone: the next save removes its file
    MLP(3, 6, 2, random_state=1).save(target)
    assert _temporaries(tmp_path) == [other]
    MLP(3, 6, 2, random_state=1).save(tmp_path / "other.npz")
    assert _temporaries(tmp_path) == []
