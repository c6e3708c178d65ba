"""Build the `conduit-sim` docker image locally, without pulling anything.

There is no registry here, so the image is made from scratch in two steps:

1. a minimal Debian bookworm rootfs (debootstrap, minbase, python3 stdlib), stripped of
   docs/man/apt lists, tarred (cached under ``cache_dir``) and imported as
   ``conduit-sim-base:local``; skipped when that image exists unless ``rebuild_base``;
2. ``docker build`` (``pull=False``) of ``sim/image/Dockerfile`` on top of it, with a build
   context holding only the simulator's stdlib modules.

This is the one module under ``conduitctl.sim`` that may use third-party packages (the
Docker SDK); it is never copied into the image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from conduitctl.errors import ConduitctlError, MissingDependency

DEFAULT_TAG = "conduit-sim:local"
BASE_TAG = "conduit-sim-base:local"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
# python3-minimal lacks asyncio, json and http.server; libpython3.11-stdlib has them.
PACKAGES = ("python3-minimal", "libpython3.11-stdlib")
BASE_TARBALL = f"debian-{SUITE}-minbase-python3.tar.gz"
# Paths (relative to the rootfs) emptied to keep the base small; nothing at runtime reads them.
STRIP_DIRS = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "var/log",
)
# Modules of the simulator package that are not stdlib-only and stay out of the image.
DOCKERD_FIX = "start dockerd: dockerd --bridge=none --iptables=false"
OUTPUT_TAIL_LINES = 30

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def default_cache_dir() -> Path:
    """Where the base rootfs tarball is cached: ``$XDG_CACHE_HOME/conduitctl`` or ``~/.cache``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "conduitctl"


def sim_package_dir() -> Path:
    """The directory of the simulator package (``src/conduitctl/sim``)."""
    return Path(__file__).resolve().parent.parent / "sim"


def dockerfile_path() -> Path:
    return sim_package_dir() / "image" / "Dockerfile"


def sim_module_files(package_dir: Path | None = None) -> list[Path]:
    """The stdlib-only ``*.py`` files of the simulator package, sorted (what the image gets)."""
    pkg = package_dir or sim_package_dir()
    return sorted(pkg.glob("*.py"))


def debootstrap_command(target: Path, suite: str = SUITE, mirror: str = MIRROR) -> list[str]:
    """The debootstrap argv for the base rootfs (pure, for tests and ``--dry-run``)."""
    return [
        _debootstrap_binary() or "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        suite,
        str(target),
        mirror,
    ]


def _debootstrap_binary() -> str | None:
    # /usr/sbin is often missing from a non-login PATH.
    return shutil.which("debootstrap") or shutil.which(
        "debootstrap", path="/usr/sbin:/sbin:/usr/local/sbin"
    )


def _docker_client() -> Any:
    """A connected Docker SDK client.

    Raises:
        MissingDependency: the SDK is not installed or no daemon answers.
    """
    try:
        import docker
        from docker.errors import DockerException
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise MissingDependency("the Docker SDK is missing: pip install docker") from exc
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        raise MissingDependency(f"no docker daemon answers ({exc}); {DOCKERD_FIX}") from exc
    return client


def image_exists(tag: str = DEFAULT_TAG) -> bool:
    """True when the local docker daemon has an image called ``tag``.

    Raises:
        MissingDependency: no docker daemon answers.
    """
    from docker.errors import ImageNotFound

    client = _docker_client()
    try:
        client.images.get(tag)
    except ImageNotFound:
        return False
    return True


def build_image(
    tag: str = DEFAULT_TAG,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    rebuild_base: bool = False,
) -> str:
    """Build the simulator image and return its id (``sha256:...``).

    Builds (or reuses) the base image ``conduit-sim-base:local`` first. Nothing is pulled.

    Raises:
        MissingDependency: docker/dockerd or debootstrap is missing (message names the fix).
        ConduitctlError: debootstrap, import or build failed (message ends with the output tail).
    """
    report = progress or _noop
    client = _docker_client()
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    build_base_image(client, cache, report, rebuild=rebuild_base)
    previous = _image_id(client, tag)
    with tempfile.TemporaryDirectory(prefix="conduit-sim-ctx-") as tmp:
        context = Path(tmp)
        prepare_build_context(context)
        report(f"building {tag} from {BASE_TAG}")
        _docker_build(client, context, tag, report)
    image_id: str = client.images.get(tag).id
    if previous is not None and previous != image_id:
        _remove_if_untagged(client, previous)
    report(f"built {tag} ({image_id[:19]})")
    return image_id


def _image_id(client: Any, tag: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        return None


def _remove_if_untagged(client: Any, image_id: str) -> None:
    """Drop the image a rebuild replaced, unless it is still tagged or used by a container."""
    from docker.errors import APIError, ImageNotFound

    try:
        if client.images.get(image_id).tags:
            return
        client.images.remove(image_id)
    except (APIError, ImageNotFound):
        pass  # in use by a container, or already gone: leave it


def prepare_build_context(context: Path, package_dir: Path | None = None) -> None:
    """Fill ``context`` with the Dockerfile and the simulator as package ``conduitctl.sim``.

    The top-level ``conduitctl/__init__.py`` is written empty on purpose: the real one may grow
    imports of third-party packages that the bare image does not have.
    """
    pkg_dir = package_dir or sim_package_dir()
    shutil.copy2(dockerfile_path(), context / "Dockerfile")
    target = context / "conduitctl" / "sim"
    target.mkdir(parents=True)
    (context / "conduitctl" / "__init__.py").write_text('"""conduit-sim image package."""\n')
    for module in sim_module_files(pkg_dir):
        shutil.copy2(module, target / module.name)


def build_base_image(client: Any, cache_dir: Path, report: Progress, rebuild: bool) -> None:
    """Make sure ``conduit-sim-base:local`` exists; debootstrap it when needed.

    The rootfs tarball is cached under ``cache_dir`` so a deleted base image is re-imported
    without downloading Debian again; ``rebuild`` forces a fresh debootstrap.
    """
    from docker.errors import APIError, ImageNotFound

    if not rebuild:
        try:
            client.images.get(BASE_TAG)
            report(f"base image {BASE_TAG} exists, reusing it")
            return
        except ImageNotFound:
            pass
    tarball = cache_dir / BASE_TARBALL
    if rebuild or not tarball.is_file():
        _debootstrap_tarball(tarball, report)
    else:
        report(f"reusing cached rootfs {tarball}")
    report(f"importing {tarball.name} as {BASE_TAG}")
    repo, _, base_tag = BASE_TAG.partition(":")
    try:
        # A file object, not a path: a path that vanished would be taken for a URL to fetch.
        with tarball.open("rb") as fh:
            client.api.import_image(
                src=fh,
                repository=repo,
                tag=base_tag,
                changes=[
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "ENV LANG=C.UTF-8",
                    'CMD ["/bin/sh"]',
                ],
            )
    except APIError as exc:
        raise ConduitctlError(f"docker import of {tarball} failed: {exc}") from exc


def _debootstrap_tarball(tarball: Path, report: Progress) -> None:
    """debootstrap a stripped rootfs and write it atomically to ``tarball``."""
    if _debootstrap_binary() is None:
        raise MissingDependency("debootstrap is not installed: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ConduitctlError(
            f"debootstrap needs root: run the image build as root (or import a base image "
            f"tagged {BASE_TAG} yourself)"
        )
    tarball.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    rootfs = work / "rootfs"
    try:
        report(f"debootstrap {SUITE} (minbase + python3) from {MIRROR}; takes a few minutes")
        _run(debootstrap_command(rootfs), report, what="debootstrap")
        strip_rootfs(rootfs)
        partial = tarball.with_name(tarball.name + ".partial")
        report(f"packing rootfs into {tarball}")
        _run(
            ["tar", "--numeric-owner", "-C", str(rootfs), "-czf", str(partial), "."],
            report,
            what="tar",
        )
        partial.replace(tarball)
    finally:
        _remove_rootfs(work)


def strip_rootfs(rootfs: Path) -> None:
    """Empty the directories in STRIP_DIRS (keep the directories themselves)."""
    for rel in STRIP_DIRS:
        directory = rootfs / rel
        if not directory.is_dir():
            continue
        for child in directory.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh if len(line.split()) > 1]
    # Deepest first so nested mounts come off before their parents.
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_rootfs(work: Path) -> None:
    """Delete a debootstrap work dir, never following a mount left behind by a failed run.

    A leftover bind mount of /dev or /proc under the rootfs would make rmtree delete the
    host's files, so unmount first and refuse to delete while anything is still mounted.
    """
    for point in _mounts_under(work):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if _mounts_under(work):
        raise ConduitctlError(f"{work} still has mounts under it; unmount them and delete it")
    shutil.rmtree(work, ignore_errors=True)


def _run(argv: list[str], report: Progress, what: str) -> None:
    """Run ``argv``, streaming each output line to ``report``; raise with the tail on failure."""
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            report(line)
        rc = proc.wait()
    if rc != 0:
        raise ConduitctlError(f"{what} failed (exit {rc}):\n" + "\n".join(tail))


def _docker_build(client: Any, context: Path, tag: str, report: Progress) -> None:
    """``docker build`` with pull=False, streaming the builder's output to ``report``."""
    from docker.errors import APIError

    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    try:
        chunks: Iterable[dict[str, Any]] = client.api.build(
            path=str(context),
            tag=tag,
            pull=False,
            rm=True,
            forcerm=True,
            decode=True,
            # RUN steps need no network, and host traffic must stay on loopback anyway.
            network_mode="none",
        )
        for chunk in chunks:
            if "error" in chunk:
                tail.append(str(chunk["error"]).rstrip())
                raise ConduitctlError(f"docker build of {tag} failed:\n" + "\n".join(tail))
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    tail.append(line)
                    report(line)
    except APIError as exc:
        raise ConduitctlError(f"docker build of {tag} failed: {exc}\n" + "\n".join(tail)) from exc
