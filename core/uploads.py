"""Files a customer uploads (the web chat's attach button): which ones are taken.

The type is decided by the bytes, never by the name or the type the browser claims:
``filetype`` reads the magic numbers at the start of the file. Plain text has none, so
it has a rule of its own (``_TextRule``): the whole file is valid UTF-8, holds no NUL or
other control character a text editor would not write, and does not start like a
program (``#!``). Anything ``filetype`` recognises as something else (an ELF or MZ
executable, a zip, an office document) is refused even if it happens to be valid UTF-8.

``UploadCheck`` is fed the body chunk by chunk as it arrives, so it needs only the first
``HEAD_BYTES`` and a running UTF-8 decoder: memory stays bounded whatever the file's size,
and an oversized body is refused as soon as it passes the limit.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Collection
from dataclasses import dataclass

import filetype

from posventa.core.errors import ValidationError
from posventa.core.texts import text

#: What ``[webchat] upload_types`` may list.
IMAGE, PDF, TEXT = "image", "pdf", "text"
UPLOAD_KINDS = (IMAGE, PDF, TEXT)
#: Enough for every signature ``filetype`` checks (it reads at most this much).
HEAD_BYTES = 8192
PDF_TYPE = "application/pdf"
TEXT_TYPE = "text/plain; charset=utf-8"
#: ``filetype`` files AutoCAD drawings under image/; they are no picture anybody can view.
_NOT_PICTURES = frozenset({"image/vnd.dwg"})
#: Images every browser shows in an <img>: the widget's thumbnail and the console's preview.
PREVIEW_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: C0 controls a text file has no business holding (tab, newline, vertical tab, form feed
#: and carriage return are text). NUL among them: the classic sign of a binary file.
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")
#: Starts of a program that is valid UTF-8 (binaries are caught by ``filetype`` or by
#: their NULs): a script with an interpreter line.
_PROGRAM_STARTS = (b"#!",)
_BOM = codecs.BOM_UTF8

#: Reasons for a refusal, also the error code the web chat sends.
TOO_LARGE = "too_large"
TYPE_REFUSED = "file_type"
EMPTY = "empty_file"


class UploadRefused(ValidationError):
    """The file is not taken; ``reason`` is one of TOO_LARGE, TYPE_REFUSED, EMPTY."""

    def __init__(self, reason: str, message: str, *, field: str = "file") -> None:
        super().__init__(message, field=field)
        self.reason = reason

    def naming(self, field: str, filename: str) -> UploadRefused:
        """The same refusal, about the form field ``field`` and the file ``filename``."""
        return UploadRefused(self.reason, f"{field}: {filename!r} is refused: {self}", field=field)


@dataclass(frozen=True, slots=True)
class UploadPolicy:
    """``[webchat] max_upload_bytes`` and ``upload_types``."""

    max_bytes: int
    kinds: frozenset[str]

    @classmethod
    def of(cls, max_bytes: int, kinds: Collection[str]) -> UploadPolicy:
        unknown = set(kinds) - set(UPLOAD_KINDS)
        if unknown:
            raise ValueError(f"unknown upload kinds: {', '.join(sorted(unknown))}")
        return cls(max_bytes=max_bytes, kinds=frozenset(kinds))

    @property
    def enabled(self) -> bool:
        return bool(self.kinds) and self.max_bytes > 0


class UploadCheck:
    """One upload's bytes as they arrive: ``feed`` each chunk, then ``finish`` for the
    content type (or ``UploadRefused``)."""

    def __init__(self, policy: UploadPolicy) -> None:
        self._policy = policy
        self.size = 0
        self._head = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")() if TEXT in policy.kinds else None
        self._text_ok = self._decoder is not None
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._policy.max_bytes:
            raise UploadRefused(TOO_LARGE, f"the file is larger than {self._policy.max_bytes} bytes")
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[:HEAD_BYTES - len(self._head)]
        if self._text_ok:
            self._text_ok = self._still_text(chunk)

    def _still_text(self, chunk: bytes) -> bool:
        if _CONTROL.search(chunk):
            return False
        try:
            self._decoder.decode(chunk)  # type: ignore[union-attr]
        except UnicodeDecodeError:
            return False
        return True

    def finish(self) -> str:
        """The content type to store the file under."""
        if self.size == 0:
            raise UploadRefused(EMPTY, "the file is empty")
        head = bytes(self._head)
        kind = filetype.guess(head)
        if kind is not None:
            mime = kind.mime
            if IMAGE in self._policy.kinds and mime.startswith("image/") and mime not in _NOT_PICTURES:
                return mime
            if PDF in self._policy.kinds and mime == PDF_TYPE:
                return mime
            raise UploadRefused(TYPE_REFUSED, f"files of type {mime} are not accepted")
        if self._text_ok and self._text_complete() and not head.removeprefix(_BOM).startswith(_PROGRAM_STARTS):
            return TEXT_TYPE
        raise UploadRefused(TYPE_REFUSED, "this type of file is not accepted")

    def _text_complete(self) -> bool:
        try:
            self._decoder.decode(b"", final=True)  # type: ignore[union-attr]
        except UnicodeDecodeError:  # the file ends inside a character
            return False
        return True


def extension_for(content_type: str) -> str:
    """A file name extension that matches the stored type (``photo.jpg`` stays, a PNG
    named ``photo.jpg`` becomes ``photo.jpg.png``: the name never contradicts the bytes)."""
    if content_type.startswith("text/plain"):
        return "txt"
    kind = filetype.get_type(mime=content_type)
    return kind.extension if kind is not None else "bin"


def matching_name(name: str, content_type: str) -> str:
    ext = extension_for(content_type)
    lower = name.lower()
    if lower.endswith("." + ext) or (ext == "jpg" and lower.endswith(".jpeg")):
        return name
    return f"{name}.{ext}"


def refusal_text(refusal: UploadRefused, policy: UploadPolicy, language: str) -> str:
    """Why the file was refused, in the customer's language."""
    if refusal.reason == TOO_LARGE:
        return text("upload_too_large", language, max=_size(policy.max_bytes))
    if refusal.reason == EMPTY:
        return text("upload_empty", language)
    kinds = ", ".join(text(f"upload_kind_{k}", language) for k in UPLOAD_KINDS if k in policy.kinds)
    return text("upload_type_refused", language, kinds=kinds)


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1024:
        return f"{n / 1024:.3g} KB"
    return f"{n} B"
