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
from pathlib import Path

from core.domain import AttachmentRef

_SAFE_NAME = re.compile(r"[^\w.\- ]+", re.UNICODE)


def safe_filename(name: str | None, default: str = "attachment") -> str:
    """A display name with no path separators or control characters."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _SAFE_NAME.sub("_", name).strip(" .")[:200]
    return name or default


class AttachmentStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

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

    async def put_raw(self, data: bytes, *, kind: str, suffix: str, durable: bool = True) -> str:
        """Keep a raw transport payload (an .eml); returns its path relative to the root."""
        rel = Path("raw") / kind / f"{secrets.token_hex(16)}{suffix}"
        await asyncio.to_thread(self._write, self.root / rel, data, durable)
        return str(rel)

    def open_raw(self, rel: str) -> bytes:
        path = (self.root / rel).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError("path outside the store")
        return path.read_bytes()

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
