"""Writing a sweep's files safely: whole or not at all, one writer per folder.

Every file is written to a temporary file unique to this process and thread
(``.runs.parquet.<pid>.<thread>.tmp``), flushed to the disk (``fsync``) and renamed into
place (``os.replace``), so a reader or a killed writer never sees half a file, and the
temporary file is removed when the write fails (a full disk). A failed write raises
:class:`StorageError`: one line naming the file and the reason. A journal
(:class:`AppendLog`) grows instead by whole, fsynced records, one a line.

A sweep folder is locked while a sweep writes to it (:class:`FolderLock`, ``fcntl.flock``
on ``<folder>/.lock``): a second ``lrlab sweep`` on the same folder is refused with one
line naming the process that holds it. The operating system releases the lock when its
process dies, so a crash or ``kill -9`` never leaves a folder locked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lrlab.errors import UsageError

LOCK_FILE = ".lock"


class StorageError(Exception):
    """A sweep's files could not be written (a full disk, a folder gone): one line."""


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` whole or not at all: ``write(fh)`` fills a temporary file that is
    fsynced and renamed into place; on any failure the temporary file is removed."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AppendLog:
    """A file that grows by whole records, one a line: the journal that makes storing a
    run cost the same at the 10,000th run as at the first.

    :meth:`append` writes a record with one ``write`` before it returns, so a killed
    process loses none; a thread of its own makes them durable (``fdatasync``), every
    record written while one sync runs by the next one (group commit), so a sync costs
    no caller its milliseconds and an operating-system crash loses at most the records of
    the last sync or two; :meth:`sync` and :meth:`close` wait for it. A record is whole or
    absent: a write cut short (a full disk) is cut back off at once; one cut by a killed
    process leaves a last line without its newline, which :func:`read_records` ignores
    and the next writer cuts off."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        self._done = threading.Condition()
        self._written = self._synced = 0  # records
        self._failed: StorageError | None = None
        self._syncer: threading.Thread | None = None

    def append(self, record: bytes) -> None:
        """Add one record (bytes without a newline)."""
        self._raise_failed()
        line = record + b"\n"
        try:
            fd = self._open()
            size = os.fstat(fd).st_size
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # no half record stays behind
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {self.path}: {exc.strerror or exc}") \
                    from exc
            raise
        with self._done:
            self._written += 1
            self._done.notify_all()

    def sync(self) -> None:
        """Wait until every record appended is on the disk."""
        with self._done:
            while self._synced < self._written and self._failed is None:
                self._done.wait()
        self._raise_failed()

    def _open(self) -> int:
        if self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            if os.fstat(fd).st_size:  # a record cut by a killed writer: cut it off
                with open(self.path, "rb") as fh:
                    os.ftruncate(fd, fh.read().rfind(b"\n") + 1)
            _sync_folder(self.path.parent)
            self._fd = fd
            self._syncer = threading.Thread(target=self._sync_loop, args=(fd,),
                                            name="lrlab-journal-sync", daemon=True)
            self._syncer.start()
        return self._fd

    def _sync_loop(self, fd: int) -> None:
        while True:
            with self._done:
                while self._synced == self._written and self._fd == fd:
                    self._done.wait()
                if self._synced == self._written:  # closed, and nothing left to sync
                    return
                target = self._written
            try:
                os.fdatasync(fd)
            except OSError as exc:
                with self._done:
                    self._failed = StorageError(f"cannot write {self.path}: "
                                                f"{exc.strerror or exc}")
                    self._done.notify_all()
                return
            with self._done:
                self._synced = target
                self._done.notify_all()

    def _raise_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def clear(self) -> None:
        """Remove the file (its records are stored elsewhere now)."""
        self.close()
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot remove {self.path}: {exc.strerror or exc}") from exc
        _sync_folder(self.path.parent)

    def close(self) -> None:
        """Wait for the disk, then close the file."""
        if self._fd is None:
            return
        try:
            self.sync()
        finally:
            fd, syncer = self._fd, self._syncer
            with self._done:
                self._fd = self._syncer = None
                self._done.notify_all()
            if syncer is not None:
                syncer.join()
            os.close(fd)


def read_records(path: str | Path) -> list[bytes]:
    """The whole records of an :class:`AppendLog` (none when the file is missing)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    return data.split(b"\n")[:-1]  # the last piece is '' or a record cut short


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def atomic_write_table(table: Any, path: str | Path) -> None:
    """An Arrow table as Parquet."""
    import pyarrow.parquet as pq

    atomic_write(path, lambda fh: pq.write_table(table, fh))


def atomic_write_parquet(frame: Any, path: str | Path) -> None:
    """A pandas DataFrame as Parquet."""
    atomic_write(path, lambda fh: frame.to_parquet(fh, index=False))


def check_writable(folder: str | Path) -> None:
    """That ``folder`` can be created (or is a folder) and written, before anything is:
    a file is created and removed in its nearest existing ancestor (permission bits alone
    do not tell: /proc, a read-only mount, a full disk). Nothing is left behind."""
    folder = Path(folder)
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"cannot write results to {folder}: {existing} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".lrlab-probe-", dir=existing)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"cannot write results to {folder}: cannot create a file in "
                         f"{existing} ({reason})") from None
    os.close(fd)
    os.unlink(probe)


class FolderLock:
    """An exclusive lock on a sweep folder, held while a sweep writes to it."""

    def __init__(self, folder: str | Path, command_line: str = "") -> None:
        self.folder = Path(folder)
        self.command_line = command_line
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fh = open(self.folder / LOCK_FILE, "a+", encoding="utf-8")
        except OSError as exc:
            raise StorageError(f"cannot write results to {self.folder}: "
                               f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                fh.close()
                raise StorageError(f"cannot lock {self.folder}: {exc.strerror}") from exc
            fh.seek(0)
            holder = _holder(fh.read())
            fh.close()
            raise UsageError(f"{self.folder} is in use by another lrlab sweep ({holder}); "
                             f"wait for it to finish, or give this one another --name") \
                from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "command": self.command_line or " ".join(sys.argv)}))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.truncate(0)
            self._fh.close()  # closing releases the flock
            self._fh = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(text: str) -> str:
    try:
        info = json.loads(text)
    except ValueError:
        return "a process that did not say which"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}: "
            f"{info.get('command')}")


@contextlib.contextmanager
def locked(folder: str | Path, command_line: str = "") -> Iterator[FolderLock]:
    with FolderLock(folder, command_line) as lock:
        yield lock
