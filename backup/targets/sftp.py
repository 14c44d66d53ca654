"""An SFTP server (paramiko), with the host key pinned.

Objects are uploaded to ``tmp/<random>.part`` and renamed into place with
the ``posix-rename@openssh.com`` extension, so a broken connection leaves a
``.part`` file, never a truncated object.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import secrets
import stat
import threading
import time

import paramiko

from backup.errors import TargetUnavailable
from backup.targets.base import TMP_PREFIX, Target, check_name


class SFTPTarget(Target):
    """``user@host:port/root`` authenticated with a private key; the host key must be known."""

    def __init__(
        self,
        host: str,
        *,
        username: str,
        root: str,
        port: int = 22,
        key_file: str | None = None,
        known_hosts: str | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.label = f"sftp://{username}@{host}:{port}{root}"
        self.root = root.rstrip("/") or "/"
        self._lock = threading.RLock()
        client = paramiko.SSHClient()
        try:
            if known_hosts:
                client.load_host_keys(known_hosts)
            else:
                client.load_system_host_keys()
        except OSError as exc:
            raise TargetUnavailable(target=self.label, detail=f"cannot read known hosts: {exc}") from exc
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                host,
                port=port,
                username=username,
                key_filename=key_file,
                timeout=timeout,
                allow_agent=False,
                look_for_keys=key_file is None,
            )
            self._sftp = client.open_sftp()
        except paramiko.SSHException as exc:
            client.close()
            raise TargetUnavailable(target=self.label, detail=f"SSH refused: {exc}") from exc
        except OSError as exc:
            client.close()
            raise TargetUnavailable(target=self.label, detail=f"cannot connect: {exc}") from exc
        self._client = client
        self._makedirs(posixpath.join(self.root, TMP_PREFIX.rstrip("/")))

    def _path(self, name: str) -> str:
        return posixpath.join(self.root, check_name(name))

    def _makedirs(self, path: str) -> None:
        parts, current = path.strip("/").split("/"), ""
        for part in parts:
            current += "/" + part
            try:
                self._sftp.stat(current)
            except FileNotFoundError:
                try:
                    self._sftp.mkdir(current, 0o700)
                except OSError:
                    self._sftp.stat(current)  # created meanwhile, or really failing

    def put(self, name: str, data: bytes) -> None:
        final = self._path(name)
        part = posixpath.join(self.root, TMP_PREFIX, f"{secrets.token_hex(8)}.part")
        with self._lock:
            try:
                with self._sftp.open(part, "wb") as out:
                    out.set_pipelined(True)
                    view = memoryview(data)
                    for offset in range(0, len(view), 1 << 20):
                        out.write(view[offset : offset + (1 << 20)])
                self._makedirs(posixpath.dirname(final))
                self._sftp.posix_rename(part, final)
            except OSError as exc:
                self._discard(part)
                raise self.translate_os_error(_with_errno(exc), f"uploading {name}") from exc

    def _discard(self, path: str) -> None:
        with contextlib.suppress(OSError):
            self._sftp.remove(path)

    def get(self, name: str) -> bytes:
        with self._lock:
            try:
                with self._sftp.open(self._path(name), "rb") as f:
                    f.prefetch()
                    return f.read()
            except FileNotFoundError:
                raise
            except OSError as exc:
                raise self.translate_os_error(exc, f"reading {name}") from exc

    def list(self, prefix: str = "") -> list[str]:
        start = posixpath.join(self.root, prefix) if prefix else self.root
        names: list[str] = []
        with self._lock:
            self._walk(start.rstrip("/"), names)
        rel = [posixpath.relpath(n, self.root) for n in names]
        return sorted(n for n in rel if not n.startswith(TMP_PREFIX))

    def _walk(self, path: str, out: list[str]) -> None:
        try:
            entries = self._sftp.listdir_attr(path)
        except FileNotFoundError:
            return
        for entry in entries:
            full = posixpath.join(path, entry.filename)
            if stat.S_ISDIR(entry.st_mode or 0):
                self._walk(full, out)
            else:
                out.append(full)

    def delete(self, name: str) -> None:
        with self._lock:
            self._discard(self._path(name))

    def interrupted_uploads(self) -> list[str]:
        with self._lock:
            try:
                names = self._sftp.listdir(posixpath.join(self.root, TMP_PREFIX))
            except FileNotFoundError:
                return []
        return sorted(f"{TMP_PREFIX}{n}" for n in names if n.endswith(".part"))

    def remove_interrupted(self, older_than: float = 0.0) -> int:
        removed = 0
        with self._lock:
            for name in self.interrupted_uploads():
                path = posixpath.join(self.root, name)
                try:
                    if time.time() - (self._sftp.stat(path).st_mtime or 0) < older_than:
                        continue
                except FileNotFoundError:
                    continue
                self._discard(path)
                removed += 1
        return removed

    def close(self) -> None:
        self._client.close()


def _with_errno(exc: OSError) -> OSError:
    """SFTP reports a full disk as a generic failure; keep the message, guess the errno."""
    if exc.errno is None and "No space" in str(exc):
        exc.errno = errno.ENOSPC
    return exc
