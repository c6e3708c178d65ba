"""The image build's pure parts: what goes into the build context, and that it is stdlib-only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from conduitctl.errors import MissingDependency
from conduitctl.runtime import sim_image as image


def _imports(path: Path) -> set[str]:
    """Top-level names of absolute imports (relative imports stay inside the package)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_image_modules_import_only_the_stdlib() -> None:
    modules = image.sim_module_files()
    assert {p.name for p in modules} >= {"__init__.py", "main.py", "server.py", "metrics.py"}
    assert "image.py" not in {p.name for p in modules}
    for module in modules:
        outside = _imports(module) - set(sys.stdlib_module_names) - {"__future__"}
        assert not outside, f"{module.name} imports {outside}; the image has only python3"


def test_build_context_has_dockerfile_and_package_only(tmp_path: Path) -> None:
    image.prepare_build_context(tmp_path)
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    expected = {"Dockerfile", "conduitctl/__init__.py"} | {
        f"conduitctl/sim/{p.name}" for p in image.sim_module_files()
    }
    assert set(files) == expected
    dockerfile = (tmp_path / "Dockerfile").read_text()
    assert f"FROM {image.BASE_TAG}" in dockerfile
    assert "USER 1000:1000" in dockerfile
    assert "STOPSIGNAL SIGTERM" in dockerfile
    assert '"-m", "conduitctl.sim.main"' in dockerfile
    # The top-level package is a stub: the real one may import third-party code.
    assert "import" not in (tmp_path / "conduitctl" / "__init__.py").read_text()


def test_debootstrap_command_is_minbase_bookworm_with_python_stdlib(tmp_path: Path) -> None:
    argv = image.debootstrap_command(tmp_path / "rootfs")
    assert argv[0].endswith("debootstrap")
    assert argv[1:] == [
        "--variant=minbase",
        "--include=python3-minimal,libpython3.11-stdlib",
        "bookworm",
        str(tmp_path / "rootfs"),
        "http://deb.debian.org/debian",
    ]


def test_strip_rootfs_empties_docs_but_keeps_the_rest(tmp_path: Path) -> None:
    for rel in (
        "usr/share/doc/python3/copyright",
        "var/lib/apt/lists/x_Packages",
        "usr/share/man/man1/ls.1.gz",
        "usr/lib/python3.11/json/__init__.py",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    image.strip_rootfs(tmp_path)
    assert list((tmp_path / "usr/share/doc").iterdir()) == []
    assert list((tmp_path / "var/lib/apt/lists").iterdir()) == []
    assert list((tmp_path / "usr/share/man").iterdir()) == []
    assert (tmp_path / "usr/lib/python3.11/json/__init__.py").exists()


def test_default_cache_dir_honours_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert image.default_cache_dir() == tmp_path / "conduitctl"


def test_no_docker_daemon_is_a_missing_dependency_naming_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    with pytest.raises(MissingDependency, match="dockerd --bridge=none --iptables=false"):
        image.build_image(cache_dir=tmp_path)
    with pytest.raises(MissingDependency):
        image.image_exists()
    assert list(tmp_path.iterdir()) == []  # nothing was debootstrapped
