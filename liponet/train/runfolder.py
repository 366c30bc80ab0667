"""A run folder belongs to one run: an exclusive lock, ownership checks, atomic file writes.

The trainer's folder holds ``last.pt``, ``best.pt``, ``log.jsonl`` and ``.lock``. While a run
is alive it holds an exclusive ``flock`` on ``.lock`` (released by the kernel when the process
dies, even by ``SIGKILL``), so a second run into the same folder is refused at once instead of
interleaving its files with the first. A folder that already holds a run's files is refused to a
fresh run unless the caller resumes that run or explicitly overwrites it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any

import torch

from . import checkpoint as _ckpt
from .checkpoint import file_mode, fsync_dir

__all__ = [
    "RUN_FILES",
    "RunFolder",
    "RunFolderError",
    "atomic_copy",
]

#: Files a run leaves in its folder.
RUN_FILES = ("last.pt", "best.pt", "log.jsonl")
#: Name of the lock file.
LOCK_NAME = ".lock"


class RunFolderError(ValueError):
    """A run folder that cannot be used: held by another run, foreign files, not writable."""


def atomic_copy(source: Path, target: Path) -> Path:
    """Copy ``source`` to ``target`` through a temporary file and ``os.replace``.

    A kill at any moment leaves either the old ``target`` or the complete new one (plus at
    most a ``.{name}.*.tmp`` file, which :meth:`RunFolder.clean_tmp` removes).
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            os.fchmod(out.fileno(), file_mode())
            _ckpt.write_phase("tmp-open", Path(tmp))
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        _ckpt.write_phase("tmp-written", Path(tmp))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    _ckpt.write_phase("replaced", target)
    return target


class RunFolder:
    """The folder of one training run.

    Parameters
    ----------
    path
        The folder (created by :meth:`acquire` if missing).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.train import RunFolder, RunFolderError
    >>> folder = RunFolder(pathlib.Path(tempfile.mkdtemp()) / "run")
    >>> folder.acquire(run_id="abc")
    >>> try:
    ...     RunFolder(folder.path).acquire(run_id="other")
    ... except RunFolderError as err:
    ...     print(str(err).split(": ", 1)[1][:33])
    in use by another run (run id abc
    >>> folder.release()
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None

    # ------------------------------------------------------------------ lock
    @property
    def locked(self) -> bool:
        """Whether this object holds the folder's lock."""
        return self._lock is not None

    def acquire(self, run_id: str) -> None:
        """Create the folder if needed and take its exclusive lock (non-blocking).

        Raises
        ------
        RunFolderError
            If the folder cannot be created or written, or another live process holds the lock
            (the message names its pid and run id).
        """
        if self._lock is not None:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            handle = open(self.path / LOCK_NAME, "a+", encoding="utf-8")
        except OSError as err:
            raise RunFolderError(
                f"out_dir {self.path}: cannot create or write the run folder "
                f"({err.strerror or type(err).__name__}); choose a writable folder"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunFolderError(
                f"out_dir {self.path}: in use by another run ({holder}); wait for it to end "
                "or choose another --out"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"run id {run_id}, pid {os.getpid()}")
            handle.flush()
        except OSError as err:
            handle.close()
            raise RunFolderError(
                f"out_dir {self.path}: not writable ({err.strerror or type(err).__name__})"
            ) from None
        self._lock = handle

    def release(self) -> None:
        """Drop the lock (the lock file stays; it is empty of meaning without a holder)."""
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    # ------------------------------------------------------------------ contents
    def run_files(self) -> list[Path]:
        """The run files present (``last.pt``, ``best.pt``, ``log.jsonl``)."""
        return [self.path / name for name in RUN_FILES if (self.path / name).exists()]

    def clean_tmp(self) -> list[Path]:
        """Remove temporary files left by a killed writer (``.*.tmp``); return them."""
        removed = []
        for tmp in self.path.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed.append(tmp)
        return removed

    def owner(self) -> str | None:
        """The run id recorded in the folder's files, or ``None`` when it holds no run.

        ``"unknown"`` for files that record none (an older liponet's). Looks at ``last.pt``,
        ``best.pt`` and the log's lines.

        Raises
        ------
        RunFolderError
            If a checkpoint there is unreadable, or the files belong to different runs.
        """
        found: dict[str, str] = {}
        for name in ("last.pt", "best.pt"):
            file = self.path / name
            if file.exists():
                try:
                    payload = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                    extra = (payload.get("extra") if isinstance(payload, dict) else None) or {}
                except Exception as err:
                    raise RunFolderError(
                        f"{file}: unreadable run file ({type(err).__name__}); move it away"
                    ) from None
                run_id = extra.get("run_id")
                found[name] = run_id if isinstance(run_id, str) else "unknown"
        log = self.path / "log.jsonl"
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                with contextlib.suppress(ValueError, AttributeError):
                    run_id = json.loads(line).get("run_id")
                    found.setdefault("log.jsonl", run_id if isinstance(run_id, str) else "unknown")
                    if found["log.jsonl"] != run_id:
                        found["log.jsonl (other lines)"] = str(run_id)
            found.setdefault("log.jsonl", "unknown")
        ids = set(found.values())
        if len(ids) > 1:
            listed = ", ".join(f"{name}: {run}" for name, run in found.items())
            raise RunFolderError(
                f"out_dir {self.path}: holds files of different runs ({listed}); move the "
                "foreign files away or use another --out"
            )
        return ids.pop() if ids else None

    def remove_run_files(self) -> None:
        """Delete the run files (``--overwrite``)."""
        for file in self.run_files():
            file.unlink()

    def truncate_log(self, run_id: str, epoch: int) -> None:
        """Keep only the log lines of ``run_id`` up to ``epoch`` (atomic rewrite).

        On resume, lines written after the checkpoint (by the epoch the kill interrupted)
        are dropped: the epoch runs again and writes them again, so no line is missing or
        doubled.
        """
        log = self.path / "log.jsonl"
        if not log.exists():
            return
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                continue  # a line cut by a kill
            if record.get("run_id") == run_id and int(record.get("epoch", 0)) <= epoch:
                kept.append(line)
        fd, tmp = tempfile.mkstemp(prefix=".log.jsonl.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write("".join(line + "\n" for line in kept))
                out.flush()
                os.fchmod(out.fileno(), file_mode())
                os.fsync(out.fileno())
            os.replace(tmp, log)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def check_room(self, needed_bytes: int) -> None:
        """Refuse a folder without room for ``needed_bytes`` more.

        Raises
        ------
        RunFolderError
            Naming the folder, the free and the needed bytes.
        """
        free = shutil.disk_usage(self.path).free
        if free < needed_bytes:
            raise RunFolderError(
                f"out_dir {self.path}: {free / 2**20:.1f} MiB free, a checkpoint write needs "
                f"about {needed_bytes / 2**20:.1f} MiB; free space or choose another --out"
            )

    def append_log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to ``log.jsonl`` and flush it to disk."""
        with open(self.path / "log.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
