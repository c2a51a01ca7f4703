"""Where dataset files live, and how to get them when they are absent (:func:`ensure_dataset`).

Lookup order for ``data_dir=None``:

1. ``$BLOCKZOO_DATA`` if set (exclusively: it overrides everything below);
2. the distribution package's folder (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist/``, Debian package
   ``dataset-fashion-mnist``);
3. the cache ``$XDG_CACHE_HOME/blockzoo/<name>/`` (default ``~/.cache/blockzoo/<name>/``).

A given path ``P`` (``data_dir`` or ``$BLOCKZOO_DATA``) may be the folder holding the files or a root holding them in
``P/<name>/`` (or in a conventional sub-folder such as ``P/FashionMNIST/raw`` or ``P/cifar-10-batches-py``).

When the files are absent, :func:`ensure_dataset` (1) for Fashion-MNIST, when running as root with ``apt-get`` and no
explicit location, installs ``dataset-fashion-mnist``; (2) otherwise/then downloads the files from the official
location with checksum verification into the target folder (``P/<name>`` for an explicit ``P``, else the cache),
each file written to a temporary name and renamed into place only once verified; (3) if all fails raises
:class:`DataError` with the exact commands to run.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable
from pathlib import Path

from .core import FETCH_CMD, DataError, DatasetInfo, FileSpec
from .idx import find_idx_file
from .registry import get_info

__all__ = ["ENV_VAR", "cache_root", "cache_dir", "candidate_dirs", "find_data_dir", "default_data_dir",
           "ensure_dataset", "verify_dataset", "download_target"]

ENV_VAR = "BLOCKZOO_DATA"
DOWNLOAD_TIMEOUT_S = 20.0
APT_TIMEOUT_S = 600.0
_CHUNK = 1 << 20

# Indirections so tests can monkeypatch them (and never touch the network or apt).
_urlopen = urllib.request.urlopen


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _have_apt() -> bool:
    return shutil.which("apt-get") is not None


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


# ---------------------------------------------------------------------------------------------------------- locations
def cache_root() -> Path:
    """``$XDG_CACHE_HOME/blockzoo`` (default ``~/.cache/blockzoo``): blockzoo's cache of downloads and decoded data."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "blockzoo"


def cache_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/blockzoo/<name>`` (default ``~/.cache/blockzoo/<name>``)."""
    return cache_root() / get_info(name).name


def _roots(info: DatasetInfo, data_dir: str | Path | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get(ENV_VAR)
    if env:
        return [Path(env).expanduser()]
    roots = [info.system_dir] if info.system_dir is not None else []
    return roots + [cache_dir(info.name)]


def candidate_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """Every folder that is searched for the files of ``name``, in order."""
    info = get_info(name)
    out: list[Path] = []
    subs = ["", info.name, *info.subdirs]
    if info.archive_folder:
        subs.append(f"{info.name}/{info.archive_folder}")
    for root in _roots(info, data_dir):
        for sub in subs:
            if sub and root.name == info.name and sub.split("/")[0] == info.name:
                continue  # root is already the <name> folder (e.g. the cache): no <name>/<name>
            p = root / sub if sub else root
            if p not in out:
                out.append(p)
    return out


def _has_files(info: DatasetInfo, directory: Path, splits: Iterable[str]) -> bool:
    for split in splits:
        for spec in info.files[split]:
            if info.kind == "idx":
                if find_idx_file(directory, spec) is None:
                    return False
            elif not (directory / spec.name).is_file():
                return False
    return True


def find_data_dir(name: str, data_dir: str | Path | None = None, splits: Iterable[str] | None = None) -> Path | None:
    """The first candidate folder holding all files of ``splits`` (default: all splits), or None."""
    info = get_info(name)
    if info.kind == "synthetic":
        return None
    splits = tuple(splits) if splits is not None else info.splits
    for d in candidate_dirs(info.name, data_dir):
        if d.is_dir() and _has_files(info, d, splits):
            return d
    return None


def download_target(name: str, data_dir: str | Path | None = None) -> Path:
    """Where :func:`ensure_dataset` puts downloaded files: ``P/<name>`` for an explicit ``P`` (``data_dir`` or
    ``$BLOCKZOO_DATA``; ``P`` itself if it is already named ``<name>``), else the cache folder."""
    info = get_info(name)
    explicit = Path(data_dir).expanduser() if data_dir is not None else (
        Path(os.environ[ENV_VAR]).expanduser() if os.environ.get(ENV_VAR) else None)
    if explicit is None:
        return cache_dir(info.name)
    return explicit if explicit.name == info.name else explicit / info.name


def _files_dir(info: DatasetInfo, target: Path) -> Path:
    """The folder holding the files once fetched into ``target`` (CIFAR: the tarball's folder inside it)."""
    return target / info.archive_folder if info.archive_folder else target


def default_data_dir(name: str) -> Path:
    """The folder ``load_dataset(name)`` reads when no ``data_dir`` is given: the first candidate that holds the files,
    or, when none does, the primary location (``$BLOCKZOO_DATA``-derived, else the system folder, e.g.
    ``/usr/share/datasets/fashion-mnist`` for Fashion-MNIST, else the cache ``~/.cache/blockzoo/<name>``)."""
    info = get_info(name)
    found = find_data_dir(info.name)
    if found is not None:
        return found
    if os.environ.get(ENV_VAR):
        return _files_dir(info, download_target(info.name))
    if info.system_dir is not None:
        return info.system_dir
    return _files_dir(info, cache_dir(info.name))


# ------------------------------------------------------------------------------------------------------- verification
def verify_dataset(name: str, directory: Path) -> None:
    """Fully read every split from ``directory`` with all checks (structure + checksums); raises DataError."""
    info = get_info(name)
    for split in info.splits:
        info.reader(info, Path(directory), split, True)


# ----------------------------------------------------------------------------------------------------------- download
def _fetch_to_temp(url: str, folder: Path, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``folder``; returns (temp path, md5 of the bytes)."""
    md5 = hashlib.md5(usedforsecurity=False)
    fd, tmp = tempfile.mkstemp(prefix=".part-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, _urlopen(url, timeout=timeout) as resp:
            while block := resp.read(_CHUNK):
                md5.update(block)
                out.write(block)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), md5.hexdigest()


def _content_sha256(path: Path) -> str:
    """sha256 of the decompressed content of a (possibly gzip) file, streamed."""
    import gzip

    h = hashlib.sha256()
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f) if gz else f
        while block := stream.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _check_download(tmp: Path, got_md5: str, spec: FileSpec, url: str) -> None:
    if spec.md5 is not None and got_md5 == spec.md5:
        return  # byte-identical to the official file
    if spec.sha256 is not None:
        try:
            got = _content_sha256(tmp)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{url}: downloaded file is not a valid gzip stream ({e})") from e
        if got == spec.sha256:
            return
        raise DataError(f"{url}: checksum mismatch after download (content sha256 {got}, expected {spec.sha256})")
    if spec.md5 is not None:
        raise DataError(f"{url}: checksum mismatch after download (md5 {got_md5}, expected {spec.md5})")
    # No checksum known: accept; structure is checked when the file is read.


def _download_idx(info: DatasetInfo, target: Path, timeout: float) -> list[str]:
    """Download every missing IDX file into ``target``. Returns the list of problems (empty on success)."""
    problems: list[str] = []
    target.mkdir(parents=True, exist_ok=True)
    for split in info.splits:
        for spec in info.files[split]:
            if find_idx_file(target, spec) is not None:
                continue
            ok = False
            for mirror in info.mirrors:
                url = mirror + spec.name
                try:
                    tmp, got_md5 = _fetch_to_temp(url, target, timeout)
                except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                    problems.append(f"{url}: {getattr(e, 'reason', e)}")
                    continue
                try:
                    _check_download(tmp, got_md5, spec, url)
                except DataError as e:
                    tmp.unlink(missing_ok=True)
                    problems.append(str(e))
                    continue
                os.replace(tmp, target / spec.name)
                ok = True
                break
            if not ok:
                return problems or [f"{spec.name}: no mirror configured"]
    return []


def _download_archive(info: DatasetInfo, target: Path, timeout: float) -> list[str]:
    """Download the tarball, check its md5, extract exactly the expected files into ``target/<archive_folder>``."""
    assert info.archive_url and info.archive_folder
    target.mkdir(parents=True, exist_ok=True)
    url = info.archive_url
    try:
        tmp, got_md5 = _fetch_to_temp(url, target, timeout)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        return [f"{url}: {getattr(e, 'reason', e)}"]
    try:
        if info.archive_md5 is not None and got_md5 != info.archive_md5:
            return [f"{url}: checksum mismatch after download (md5 {got_md5}, expected {info.archive_md5})"]
        wanted = {f"{info.archive_folder}/{spec.name}" for split in info.splits for spec in info.files[split]}
        final = target / info.archive_folder
        staging = Path(tempfile.mkdtemp(prefix=".part-", dir=target))
        try:
            with tarfile.open(tmp, "r:gz") as tar:
                for member in tar.getmembers():  # only the expected regular files, by exact name: no path tricks
                    name = member.name.removeprefix("./")
                    if name in wanted and member.isfile():
                        src = tar.extractfile(member)
                        assert src is not None
                        with src, open(staging / Path(name).name, "wb") as out:
                            shutil.copyfileobj(src, out, _CHUNK)
            missing = sorted(n for n in wanted if not (staging / Path(n).name).is_file())
            if missing:
                return [f"{url}: archive lacks {', '.join(missing)}"]
            final.mkdir(parents=True, exist_ok=True)
            for f in staging.iterdir():
                os.replace(f, final / f.name)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            return [f"{url}: cannot extract the archive ({e})"]
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        tmp.unlink(missing_ok=True)
    return []


def _apt_install(package: str) -> str | None:
    """Run ``apt-get install -y <package>`` (after ``apt-get update`` if the first attempt fails, e.g. on a fresh
    container with empty package lists); returns None on success, else a short description of the failure."""
    try:
        r = _run(["apt-get", "install", "-y", package], APT_TIMEOUT_S)
        if r.returncode != 0:
            u = _run(["apt-get", "update"], APT_TIMEOUT_S)
            if u.returncode == 0:
                r = _run(["apt-get", "install", "-y", package], APT_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as e:
        return f"apt-get install {package}: {e}"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout or "").strip().splitlines()[-3:]
        return f"apt-get install {package} failed (exit {r.returncode}): {' | '.join(tail)}"
    return None


def _instructions(info: DatasetInfo, target: Path) -> str:
    fetch = FETCH_CMD.format(name=info.name)
    lines = ["Fix (any one of):"]
    if info.apt_package:
        lines.append(f"  sudo apt-get install {info.apt_package}        # files land in {info.system_dir}")
    if info.mirrors:
        names = " ".join(spec.name for split in info.splits for spec in info.files[split])
        lines.append(f"  mkdir -p {target} && cd {target} && for f in {names}; do "
                     f"curl -fLO {info.mirrors[0]}$f; done")
    if info.archive_url:
        lines.append(f"  mkdir -p {target} && curl -fL {info.archive_url} | tar -xz -C {target}")
    lines.append(f"  or copy the files from a machine that has them into {_files_dir(info, target)}")
    lines.append(f"then check them with `{fetch}`; or point {ENV_VAR} (or data_dir=) at a folder that holds them.")
    return "\n".join(lines)


def ensure_dataset(name: str, data_dir: str | Path | None = None, *, verify: bool = True,
                   download: bool = True, timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Make sure the files of dataset ``name`` are available and return the folder that holds them.

    Present files are verified (structure + checksums, see :mod:`blockzoo.data.registry`) when ``verify``. Absent files
    are installed with apt (Fashion-MNIST, root, no explicit location) or downloaded with checksum verification,
    atomically, into :func:`download_target` (``download=False``: neither, only look). Raises :class:`DataError`
    with the exact commands to run when neither works (e.g. no network). The synthetic dataset needs no files: its
    cache folder is returned as is.
    """
    info = get_info(name)
    if info.kind == "synthetic":
        return cache_dir(info.name)
    found = find_data_dir(info.name, data_dir)
    if found is not None:
        if verify:
            verify_dataset(info.name, found)
        return found

    explicit = data_dir is not None or bool(os.environ.get(ENV_VAR))  # then apt would install to the wrong place
    problems: list[str] = []
    if info.apt_package and not explicit and download:
        if _is_root() and _have_apt():
            err = _apt_install(info.apt_package)
            if err is None:
                found = find_data_dir(info.name, data_dir)
                if found is not None:
                    if verify:
                        verify_dataset(info.name, found)
                    return found
                err = f"apt-get install {info.apt_package} succeeded but {info.system_dir} still lacks the files"
            problems.append(err)
        else:
            problems.append(f"not installing {info.apt_package} with apt-get (needs root and apt-get)")

    target = download_target(info.name, data_dir)
    if download and (info.mirrors or info.archive_url):
        new_dirs = [p for p in (target, *target.parents) if not p.exists()]
        try:
            errs = (_download_idx if info.kind == "idx" else _download_archive)(info, target, timeout)
        except OSError as e:  # e.g. target folder not writable
            errs = [f"cannot write into {target}: {e}"]
        if errs:  # leave no empty folders behind after a failed attempt
            for p in new_dirs:
                try:
                    p.rmdir()
                except OSError:
                    break
        if not errs:
            found = _files_dir(info, target)
            if verify:
                verify_dataset(info.name, found)
            return found
        problems.extend(errs)
    elif not download:
        problems.append("download disabled (download=False)")

    looked = ", ".join(str(p) for p in candidate_dirs(info.name, data_dir))
    why = "\n".join(f"  - {p}" for p in problems[:8])
    raise DataError(f"{info.title}: files not found (looked in: {looked}) and could not be fetched automatically "
                    f"(no network?):\n{why}\n{_instructions(info, target)}")
