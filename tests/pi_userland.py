"""A Raspberry Pi's userland on this machine: Debian 12 "Bookworm" arm64 under qemu-user.

64-bit Raspberry Pi OS is Debian 12 for arm64 plus the Raspberry Pi archive, so a
``debootstrap --arch=arm64`` root with the OS's Python 3.11 runs what a Pi 3, 4, 5 or
Zero 2 W runs: ``chroot ROOT python3`` is an aarch64 CPython, executed by
``qemu-aarch64-static`` through the kernel's binfmt_misc handler (registered here from
``/usr/lib/binfmt.d/qemu-aarch64.conf``, the file the Debian package ships; its ``F``
flag opens the interpreter at registration, so it works inside the chroot too).

The root is built once and cached under a stable path (:data:`CACHE`, default
``/var/cache/edge-agent-arm64``; ``EDGE_AGENT_ARM64_CACHE`` to move it): a cold build
takes minutes (debootstrap, network needed), a cached one nothing. Its name carries a
hash of what it holds, so a changed package list builds a new one. Builds are
serialised by a lock file; a build that did not finish is never used (the root is
renamed into place only when complete).

:func:`run` / :func:`start` run a command there the way the nucleus runs a lifecycle
step: in a new network namespace with only a loopback that is down (``unshare --net``:
no route anywhere) unless ``network=True``, in a new mount and PID namespace with its
own ``/proc`` (unmounted when the command ends, so the cached root stays clean), as
root or as ``user``. Requires root, ``debootstrap``, ``qemu-user-static`` and
``unshare``: :func:`unavailable` says what is missing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

CACHE = Path(os.environ.get("EDGE_AGENT_ARM64_CACHE", "/var/cache/edge-agent-arm64"))
SUITE = "bookworm"
MIRROR = os.environ.get("EDGE_AGENT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What Raspberry Pi OS Lite has that the components use: the OS's Python with venv (the
# Install step makes a venv of it), and numpy and Pillow, which python3-sense-hat pulls in
# there (the sense_hat library's memory is measured with them).
PACKAGES = ("python3", "python3-venv", "python3-numpy", "python3-pil")
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
DEVICE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TIMEOUT_S = 40 * 60


def root_path() -> Path:
    """Where the cached root is (it may not exist yet)."""
    digest = hashlib.sha256(" ".join((SUITE, MIRROR) + PACKAGES).encode()).hexdigest()[:10]
    return CACHE / "{}-arm64-{}".format(SUITE, digest)


def unavailable() -> Optional[str]:
    """Why no userland can be run here, or None."""
    if os.geteuid() != 0:
        return "the arm64 userland needs root (chroot, unshare, binfmt_misc)"
    for tool in ("debootstrap", "unshare", "chroot"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return "{} is not installed (apt-get install debootstrap util-linux)".format(tool)
    if not QEMU_CONF.exists():
        return "qemu-user-static is not installed (apt-get install qemu-user-static)"
    return None


def register_binfmt() -> None:
    """Let the kernel run aarch64 ELF files through qemu: mount binfmt_misc if needed and
    register the handler the qemu-user-static package describes (once per boot)."""
    if not (BINFMT / "register").exists():
        subprocess.run(
            ["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
            check=True,
            capture_output=True,
        )
    if not (BINFMT / "qemu-aarch64").exists():
        (BINFMT / "register").write_text(QEMU_CONF.read_text().strip() + "\n")


def ensure_root(log: Optional[Path] = None) -> Tuple[Path, float]:
    """The cached root, built first if missing: (its path, seconds spent building it)."""
    register_binfmt()
    root = root_path()
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building it right now
        if (root / ".complete").exists():
            return root, 0.0
        started = time.monotonic()
        building = CACHE / ".building-{}".format(root.name)
        shutil.rmtree(building, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
        argv = [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            SUITE,
            str(building),
            MIRROR,
        ]
        with open(log or os.devnull, "w") as out:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT_S
            )
        if done.returncode != 0:
            raise RuntimeError(
                "debootstrap failed ({}); see {}".format(done.returncode, log or "its output")
            )
        shutil.rmtree(building / "var" / "cache" / "apt" / "archives", ignore_errors=True)
        (building / ".complete").write_text(" ".join(argv) + "\n")
        building.rename(root)
        return root, time.monotonic() - started


def _argv(
    root: Path, argv: Sequence[str], *, cwd: str, network: bool, user: Optional[Tuple[int, int]]
) -> list:
    namespaces = ["unshare", "--mount", "--pid", "--fork", "--kill-child"]
    namespaces.append("--mount-proc=" + str(root / "proc"))
    if not network:
        namespaces.append("--net")
    chroot = ["chroot"]
    if user is not None:
        chroot.append("--userspec={}:{}".format(*user))
    # cd inside the chroot: the step's working folder is a device path.
    shell = 'cd "$1" && shift && exec "$@"'
    return namespaces + chroot + [str(root), "/bin/sh", "-c", shell, "sh", cwd] + list(argv)


def device_env(extra: Optional[Mapping[str, str]] = None) -> dict:
    """A minimal environment as a service on the device has it, plus ``extra``."""
    env = {"PATH": DEVICE_PATH, "LANG": "C.UTF-8"}
    env.update(extra or {})
    return env


def run(
    root: Path,
    argv: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    cwd: str = "/",
    network: bool = False,
    user: Optional[Tuple[int, int]] = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Run ``argv`` in the userland and wait (see the module doc)."""
    return subprocess.run(
        _argv(root, argv, cwd=cwd, network=network, user=user),
        env=device_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(
    root: Path,
    argv: Sequence[str],
    *,
    env: Optional[Mapping[str, str]] = None,
    cwd: str = "/",
    network: bool = False,
    user: Optional[Tuple[int, int]] = None,
    stdout: object = subprocess.DEVNULL,
    stderr: object = subprocess.PIPE,
) -> subprocess.Popen:
    """Start ``argv`` in the userland; :func:`stop` ends all of it."""
    return subprocess.Popen(
        _argv(root, argv, cwd=cwd, network=network, user=user),
        env=device_env(env),
        stdout=stdout,
        stderr=stderr,
    )


def stop(process: subprocess.Popen, timeout: float = 30) -> str:
    """End what :func:`start` started, all of it; what it wrote on stderr.

    The command is the init of its own PID namespace, so killing it ends every process
    there. (``unshare --kill-child`` alone does not: ``chroot --userspec`` changes the
    credentials, which clears the parent-death signal.)
    """
    for task in os.listdir("/proc/{}/task".format(process.pid)) if process.poll() is None else []:
        with open("/proc/{}/task/{}/children".format(process.pid, task)) as children:
            for child in children.read().split():
                try:
                    os.kill(int(child), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    process.kill()
    _, stderr = process.communicate(timeout=timeout)
    if isinstance(stderr, bytes):
        return stderr.decode("utf-8", "replace")
    return stderr or ""
