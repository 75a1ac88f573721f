"""Files customers send, stored on disk by content hash before the message commits.

Writing the file first and committing its row second means a crash in between leaves
at worst an orphan file, never a row pointing at nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import time
from typing import Any
from pathlib import Path

from posventa.core.domain import AttachmentRef

_SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)
INLINE_WRITE_BYTES = 64 * 1024


def safe_filename(name: str | None, default: str = "attachment") -> str:
    """A display name with no path separators or control characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _SAFE_NAME.sub("_", name).strip(" .")[:200]
    return name or default


class AttachmentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._segments: dict[tuple[str, str], Any] = {}
        self._segment_lock = asyncio.Lock()

    def path_for(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError("not a sha256 hex digest")
        return self.root / "attachments" / sha256[:2] / sha256[2:4] / sha256

    async def put(self, data: bytes, *, filename: str | None, content_type: str | None,
                  inline: bool = False) -> AttachmentRef:
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, self.path_for(digest), data)
        return AttachmentRef(filename=safe_filename(filename), content_type=(content_type or "application/octet-stream")[:200],
                             size=len(data), sha256=digest, inline=inline)

    def receive(self) -> IncomingFile:
        """A file to write as it arrives (an upload streamed from the network): bounded
        memory, hashed on the way; ``IncomingFile.keep`` files it under its hash."""
        folder = self.root / "attachments" / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        return IncomingFile(self, folder / f"{secrets.token_hex(16)}.part")

    async def put_raw(self, data: bytes, *, kind: str, suffix: str, durable: bool = True) -> str:
        """Keep a raw transport payload (an .eml); returns a reference for ``open_raw``.

        ``durable=True`` writes a file of its own, fsynced. Otherwise the payload is an
        audit copy (what the customer said is made durable by the commit): it is appended
        to this process's segment file for the day, which costs one write instead of
        creating a file per message; a process crash keeps it (the kernel has it).
        """
        if durable:
            rel = Path("raw") / kind / f"{secrets.token_hex(16)}{suffix}"
            await asyncio.to_thread(self._write, self.root / rel, data, True)
            return str(rel)
        async with self._segment_lock:
            segment = self._segment(kind, suffix)
            offset = segment.tell()
            if len(data) <= INLINE_WRITE_BYTES:
                segment.write(data)
            else:
                await asyncio.to_thread(segment.write, data)
            segment.flush()
            rel = Path(segment.name).relative_to(self.root)
        return f"{rel}@{offset}+{len(data)}"

    def _segment(self, kind: str, suffix: str):
        day = time.strftime("%Y%m%d", time.gmtime())
        key = (kind, day)
        fh = self._segments.get(key)
        if fh is None:
            for old_key in [k for k in self._segments if k[0] == kind]:
                self._segments.pop(old_key).close()
            folder = self.root / "raw" / kind
            folder.mkdir(parents=True, exist_ok=True)
            fh = open(folder / f"{day}-{os.getpid()}-{secrets.token_hex(4)}{suffix}.seg", "ab")  # noqa: SIM115
            self._segments[key] = fh
        return fh

    def close(self) -> None:
        for fh in self._segments.values():
            fh.close()
        self._segments.clear()

    def open_raw(self, rel: str) -> bytes:
        name, at, span = rel.rpartition("@")
        path = (self.root / (name if at else rel)).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("path outside the store")
        if not at:
            return path.read_bytes()
        offset, _, length = span.partition("+")
        with open(path, "rb") as fh:
            fh.seek(int(offset))
            return fh.read(int(length))

    def delete(self, sha256: str) -> bool:
        """Remove a stored file (a privacy erasure). The caller has checked that no other
        attachment row shares its content. True when a file was there."""
        try:
            self.path_for(sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def erase_raw(self, rel: str) -> None:
        """Remove a raw payload: its own file, or its bytes inside a segment (overwritten
        with zeros, so the segment's other payloads keep their offsets)."""
        name, at, span = rel.rpartition("@")
        path = (self.root / (name if at else rel)).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("path outside the store")
        if not at:
            path.unlink(missing_ok=True)
            return
        offset, _, length = span.partition("+")
        try:
            with open(path, "r+b") as fh:
                fh.seek(int(offset))
                fh.write(bytes(int(length)))
                fh.flush()
                os.fsync(fh.fileno())
        except FileNotFoundError:
            pass

    @staticmethod
    def _write(path: Path, data: bytes, durable: bool = True) -> None:
        if path.exists():
            return  # content-addressed: same hash, same bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)


class IncomingFile:
    """One file being received. ``write`` each chunk, then ``keep`` (fsynced, moved to its
    content address; a file already there is the same bytes, so this copy is dropped:
    deduplicated) or ``discard``. The chunks go to disk off the event loop."""

    def __init__(self, store: AttachmentStore, tmp: Path) -> None:
        self._store = store
        self._tmp = tmp
        self._hash = hashlib.sha256()
        self._fh = open(tmp, "wb")  # noqa: SIM115 (closed by keep or discard)
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self.size += len(chunk)
        await asyncio.to_thread(self._fh.write, chunk)

    async def keep(self, *, filename: str | None, content_type: str) -> AttachmentRef:
        digest = self._hash.hexdigest()
        await asyncio.to_thread(self._settle, self._store.path_for(digest))
        return AttachmentRef(filename=safe_filename(filename), content_type=content_type[:200], size=self.size,
                             sha256=digest)

    def _settle(self, path: Path) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        if path.exists():
            self._tmp.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, path)

    def discard(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)
