"""Images in a case's KB entry: what an agent pastes or uploads into the Markdown editor.

The bytes go to the attachment store (core/attachments.py, by sha256) like any customer
attachment; a ``kb_images`` row ties them to the case. The Markdown refers to an image
by ``KB_IMAGE_PATH`` + id, a URL the console serves; publishing (kb/publisher.py) swaps
each such reference for the Discourse upload, so the forum never links to us.

Only images are taken, recognised by their bytes (``filetype``), never by the name or
the type the browser claims; ``MAX_IMAGE_BYTES`` bounds each one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import filetype
from sqlalchemy import insert, select, update

from posventa.core.attachments import AttachmentStore, safe_filename
from posventa.core.errors import NotFound, ValidationError
from posventa.core.persistence import Database
from posventa.core.persistence.schema import cases, kb_images
from posventa.core.ports import Clock

#: Where the console serves a KB image; the Markdown the agent writes carries this path.
KB_IMAGE_PATH = "/console/kb/images/"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
#: What Discourse and every browser show inline; SVG is left out (it can carry script).
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: ``/console/kb/images/12`` (optionally ``/name.png`` after it) inside Markdown.
_REFERENCE = re.compile(re.escape(KB_IMAGE_PATH) + r"(\d{1,18})(?:/[\w.\-%]{0,200})?")


@dataclass(frozen=True, slots=True)
class KbImage:
    id: int
    case_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    discourse_url: str | None = None

    @property
    def path(self) -> str:
        return f"{KB_IMAGE_PATH}{self.id}/{self.filename}"


def referenced_ids(markdown: str) -> list[int]:
    """The KB image ids a Markdown text refers to, in order, each once."""
    return list(dict.fromkeys(int(m.group(1)) for m in _REFERENCE.finditer(markdown)))


def replace_references(markdown: str, urls: dict[int, str]) -> str:
    """``markdown`` with each reference to an image in ``urls`` replaced by its URL."""
    return _REFERENCE.sub(lambda m: urls.get(int(m.group(1)), m.group(0)), markdown)


class KbImages:
    def __init__(self, *, db: Database, files: AttachmentStore, clock: Clock) -> None:
        self._db = db
        self._files = files
        self._clock = clock

    async def add(self, number: int, data: bytes, *, filename: str | None, agent: str) -> KbImage:
        if not data:
            raise ValidationError("the image is empty", field="image")
        if len(data) > MAX_IMAGE_BYTES:
            raise ValidationError(f"the image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MB", field="image")
        kind = filetype.guess(data[:262])
        if kind is None or kind.mime not in IMAGE_TYPES:
            raise ValidationError("only PNG, JPEG, GIF or WebP images can go into the KB", field="image")
        name = safe_filename(filename, default=f"image.{kind.extension}")
        if not name.lower().endswith("." + kind.extension) and not (
                kind.extension == "jpg" and name.lower().endswith(".jpeg")):
            name = f"{name.rsplit('.', 1)[0] if '.' in name else name}.{kind.extension}"
        async with self._db.engine.connect() as conn:
            if (await conn.execute(select(cases.c.id).where(cases.c.id == number))).first() is None:
                raise NotFound(f"case {number} not found")
        # The file first, the row second: a crash between leaves an orphan file, never a
        # row pointing at nothing (as for attachments).
        ref = await self._files.put(data, filename=name, content_type=kind.mime)
        async with self._db.transaction() as conn:
            image_id = (await conn.execute(insert(kb_images).values(
                case_id=number, filename=ref.filename, content_type=ref.content_type, size=ref.size,
                sha256=ref.sha256, created_by=agent[:120], created_at=self._clock.now(),
            ).returning(kb_images.c.id))).scalar_one()
        return KbImage(image_id, number, ref.filename, ref.content_type, ref.size, ref.sha256)

    async def get(self, image_id: int) -> KbImage:
        async with self._db.engine.connect() as conn:
            row = (await conn.execute(select(kb_images).where(kb_images.c.id == image_id))).first()
        if row is None:
            raise NotFound(f"KB image {image_id} not found")
        return _image(row)

    async def of_case(self, number: int, ids: Iterable[int]) -> list[KbImage]:
        """Those of ``ids`` that belong to case ``number`` (another case's image is never published)."""
        wanted = list(ids)
        if not wanted:
            return []
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(select(kb_images).where(kb_images.c.case_id == number,
                                                               kb_images.c.id.in_(wanted)))).all()
        return [_image(r) for r in rows]

    def read(self, image: KbImage) -> bytes:
        return self._files.path_for(image.sha256).read_bytes()

    async def record_upload(self, image_id: int, url: str) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(update(kb_images).where(kb_images.c.id == image_id).values(discourse_url=url[:1000]))


def _image(row) -> KbImage:
    return KbImage(row.id, row.case_id, row.filename, row.content_type, row.size, row.sha256, row.discourse_url)
