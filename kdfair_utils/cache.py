"""Content-addressed, atomic, self-checking on-disk caching: keys are hashes of the full config.

* Files are written to a temporary file beside their target and renamed into place, so a crash
  leaves the old file or none; they get the permissions the umask gives (not mkstemp's 0600),
  so a group can share a cache.
* :func:`file_record` / :func:`check_file` store and verify a file's sha256 and size;
  :func:`seal` / :func:`unseal` protect a JSON record with a checksum of its own content.
* :func:`file_lock` is an advisory lock (``flock``) that the operating system releases when its
  holder dies, so a killed run never leaves a stale lock; :func:`remove_stale_tmp` removes
  temporary files a killed writer left, and must be called only while holding the lock of the
  folder's writers.
* :func:`cached_npz` puts these together for generated or decoded data: read if intact, else
  make once under a lock (saying why an existing file was replaced) and write atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

T = TypeVar("T")

TMP_GLOB = ".*.tmp"


def config_key(config: Any, length: int = 16) -> str:
    """Stable hash of a JSON-serialisable config (dict keys sorted, floats repr'd exactly)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def atomic_write(path: Path | str, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or none, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_json(path: Path | str, obj: Any) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))

    return atomic_write(path, write)


def load_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())


def save_npz(path: Path | str, **arrays: np.ndarray) -> Path:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)


def load_npz(path: Path | str | bytes) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file (or of its bytes); never unpickles objects."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    with np.load(source, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def sha256_bytes(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def file_record(path: Path | str) -> dict[str, Any]:
    """``{"sha256": ..., "bytes": ...}`` of a file, for :func:`check_file`."""
    blob = Path(path).read_bytes()
    return {"sha256": sha256_bytes(blob), "bytes": len(blob)}


def check_file(path: Path | str, record: dict[str, Any]) -> bytes:
    """The file's bytes if they match ``record`` (:func:`file_record`); otherwise ``ValueError``
    saying whether the file is missing, truncated or extended, or altered."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path.name} is missing")
    blob = path.read_bytes()
    if len(blob) != record.get("bytes"):
        raise ValueError(f"{path.name} has {len(blob)} bytes, {record.get('bytes')} were written "
                         "(truncated or replaced)")
    if sha256_bytes(blob) != record.get("sha256"):
        raise ValueError(f"{path.name} does not match its sha256 (corrupted or replaced)")
    return blob


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` plus ``"checksum"``: the sha256 of its canonical JSON, checked by :func:`unseal`."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return {**body, "checksum": config_key(_plain(body), length=64)}


def unseal(record: Any) -> dict[str, Any]:
    """The record without its checksum; ``ValueError`` if the checksum is absent or wrong."""
    if not isinstance(record, dict) or "checksum" not in record:
        raise ValueError("has no checksum (written by an older kdfair, or not by kdfair)")
    body = {k: v for k, v in record.items() if k != "checksum"}
    if config_key(body, length=64) != record["checksum"]:
        raise ValueError("does not match its checksum (edited or corrupted)")
    return body


def _plain(obj: Any) -> Any:
    """JSON round trip, so a checksum is taken over exactly what is written."""
    return json.loads(json.dumps(obj, default=_json_default))


@contextlib.contextmanager
def file_lock(path: Path | str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an exclusive advisory lock on ``path`` (created if missing); yields whether it was
    acquired (always True when ``blocking``). Released on exit, or by the OS if the process dies.

    On systems without ``fcntl`` (Windows) it yields True without locking: one runner per cache.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield True
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: another user's lock file works too
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def remove_stale_tmp(folder: Path | str, name: str | None = None) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder`` (only those of the file
    ``name`` if given); returns them. Call it only while holding the lock that the writers of
    those files hold."""
    folder = Path(folder)
    pattern = f".{name}.*.tmp" if name is not None else TMP_GLOB
    stale = sorted(folder.glob(pattern)) if folder.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and restore it at once
    os.umask(mask)
    return mask


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def tag_bytes(tag: Any) -> np.ndarray:
    """``tag`` as canonical JSON bytes (a uint8 array), to store inside an ``.npz``."""
    return np.frombuffer(json.dumps(tag, sort_keys=True, default=_json_default).encode(), dtype=np.uint8)


def read_tagged_npz(path: Path, tag: Any) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The arrays of an ``.npz`` written with ``tag`` (:func:`cached_npz`), without the tag:
    ``(arrays, None)``; ``(None, problem)`` if it cannot be read (loading every member checks
    its zip CRC, so flipped or truncated bytes are caught) or holds another tag (a replaced
    file); ``(None, None)`` if there is no file."""
    if not path.exists():
        return None, None
    try:
        arrays = load_npz(path)
    except Exception as exc:  # BadZipFile (truncated, bad CRC), ValueError, OSError, EOFError, ...
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    stored = arrays.pop("tag", None)
    if stored is None:
        return None, "it has no tag (written by an older kdfair)"
    if not np.array_equal(stored, tag_bytes(tag)):
        return None, "it holds other data (another config, or other source files)"
    return arrays, None


def cached_npz(path: Path, tag: Any, check: Callable[[dict[str, np.ndarray]], tuple[T | None, str | None]],
               make: Callable[[], tuple[T, dict[str, np.ndarray]]], *, root: Path, root_name: str, what: str) -> T:
    """Generated or decoded data, cached in the ``.npz`` at ``path`` that embeds ``tag`` (what the
    data depend on, JSON).

    An intact file with this tag whose arrays ``check`` accepts (``(value, None)``; else
    ``(None, problem)``) gives ``check``'s value; otherwise ``make`` returns the value and the
    arrays to write. A rejected file is replaced, with a line on stderr naming it and the problem.
    ``root`` (the argument ``root_name``) must be writable before anything is made; making holds a
    lock, so concurrent processes make the file once; only this file's leftover temporaries are
    removed.
    """
    from .validation import check_writable_dir

    def read() -> tuple[T | None, str | None]:
        arrays, problem = read_tagged_npz(path, tag)
        return (None, problem) if arrays is None else check(arrays)

    value, _ = read()
    if value is not None:
        return value
    check_writable_dir(root, root_name)
    with file_lock(path.parent / ".locks" / f"{path.name}.lock"):
        value, problem = read()  # another process may have written it meanwhile
        if value is not None:
            return value
        if problem:
            print(f"regenerating the {what} {path}: {problem}", file=sys.stderr)
        remove_stale_tmp(path.parent, path.name)
        value, arrays = make()
        save_npz(path, tag=tag_bytes(tag), **arrays)
    return value
