from pathlib import Path

from conduitctl.runtime.cgroup import BackendCgroup


def test_v1_group_limit_and_oom_count(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    group = BackendCgroup("demo", "demo-1", root=tmp_path)
    assert group.create(64 * 1024**2) is None
    assert (group.path / "memory.limit_in_bytes").read_text() == str(64 * 1024**2)
    assert group.procs == tmp_path / "memory/conduitctl/demo/demo-1/cgroup.procs"
    assert group.oom_kills() is None  # the kernel writes memory.oom_control, not us
    (group.path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_kills() == 2


def test_v2_group_enables_the_memory_controller_down_the_tree(tmp_path: Path):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("")
    (tmp_path / "conduitctl").mkdir()
    (tmp_path / "conduitctl/cgroup.subtree_control").write_text("")
    (tmp_path / "conduitctl/demo").mkdir()
    (tmp_path / "conduitctl/demo/cgroup.subtree_control").write_text("")
    group = BackendCgroup("demo", "demo-1", root=tmp_path)
    assert group.create(128 * 1024**2) is None
    assert (group.path / "memory.max").read_text() == str(128 * 1024**2)
    assert "+memory" in (tmp_path / "conduitctl/demo/cgroup.subtree_control").read_text()
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_kills() == 1


def test_unwritable_hierarchy_says_why(tmp_path: Path):
    (tmp_path / "memory").write_text("not a directory")
    why = BackendCgroup("demo", "demo-1", root=tmp_path).create(1024)
    assert why is not None and "demo-1" in why


def test_remove_cleans_up_empty_parents(tmp_path: Path):
    (tmp_path / "memory").mkdir()
    group = BackendCgroup("demo", "demo-1", root=tmp_path)
    group.create(1024)
    (group.path / "memory.limit_in_bytes").unlink()  # a real cgroup dir looks empty to rmdir
    group.remove()
    assert not (tmp_path / "memory/conduitctl").exists()
