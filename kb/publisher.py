"""Publishing a solved case to Discourse, as an outbox channel (``kb``).

Going through the outbox means a Discourse outage only delays publication: the item
waits in ``awaiting_retry`` and goes out when the forum is back. ``external_id =
case-<number>`` makes a retry after an ambiguous timeout harmless.
"""

from __future__ import annotations

import asyncio

from posventa.core.cases import CaseService
from posventa.core.domain import ChannelName, ClaimedDelivery
from posventa.core.errors import NotFound, PermanentDeliveryError, TransientDeliveryError
from posventa.core.kb_images import KbImages, referenced_ids, replace_references
from posventa.kb.discourse import (
    DiscourseAuthError,
    DiscourseBadResponse,
    DiscourseClient,
    DiscourseRejected,
    DiscourseUnavailable,
)

SECTION_TITLES = {
    "es": ("Problema", "Respuesta", "Hotfix", "Aplicación", "Caso de referencia"),
    "pt": ("Problema", "Resposta", "Hotfix", "Aplicação", "Caso de referência"),
    "en": ("Problem", "Answer", "Hotfix", "Application", "Case reference"),
}


def publication(case: dict) -> tuple[str, str]:
    """(title, raw markdown) for a case's KB entry."""
    lang = case.get("language") if case.get("language") in SECTION_TITLES else "es"
    problem_t, answer_t, hotfix_t, app_t, ref_t = SECTION_TITLES[lang]
    kb = case["kb"]
    title = " ".join(case["title"].split())
    if len(title) < 15:
        title = f"{title} (#{case['number']})".strip()
    parts = [f"## {problem_t}\n\n{kb.get('problem') or case['description']}", f"## {answer_t}\n\n{kb.get('answer')}"]
    if kb.get("hotfix"):
        parts.append(f"## {hotfix_t}\n\n{kb['hotfix']}")
    if kb.get("application"):
        parts.append(f"## {app_t}\n\n{kb['application']}")
    parts.append(f"{ref_t}: #{case['number']}")
    return title[:250], "\n\n".join(parts)


class KbPublishChannel:
    name = ChannelName.KB

    def __init__(self, *, client: DiscourseClient, cases: CaseService, category: int | None,
                 images: KbImages | None = None) -> None:
        self._client = client
        self._cases = cases
        self._category = category or None
        self._images = images

    async def _upload_images(self, number: int, raw: str) -> str:
        """``raw`` with the case's KB images uploaded to Discourse and referred to there:
        the post must not point at our console, which the forum's readers cannot reach.
        An image already uploaded (an earlier attempt) is not uploaded again."""
        ids = referenced_ids(raw)
        if not ids or self._images is None:
            return raw
        urls: dict[int, str] = {}
        for image in await self._images.of_case(number, ids):
            if image.discourse_url is None:
                uploaded = await self._client.upload(await asyncio.to_thread(self._images.read, image),
                                                     filename=image.filename, content_type=image.content_type)
                await self._images.record_upload(image.id, uploaded.markdown_url)
                urls[image.id] = uploaded.markdown_url
            else:
                urls[image.id] = image.discourse_url
        missing = [i for i in ids if i not in urls]
        if missing:
            # Another case's image, or a deleted one: publishing our URL would leak it.
            raise PermanentDeliveryError(f"the KB text refers to image(s) {missing} that are not this case's")
        return replace_references(raw, urls)

    async def send(self, message: ClaimedDelivery) -> str | None:
        number = message.case_number
        if number is None:
            raise PermanentDeliveryError("KB publication without a case")
        try:
            case = await self._cases.get_case(number)
        except NotFound:
            raise PermanentDeliveryError(f"case {number} no longer exists") from None
        title, raw = publication(case)
        try:
            raw = await self._upload_images(number, raw)
            created = await self._client.create_topic(title=title, raw=raw, category=self._category,
                                                      external_id=f"case-{number}")
        except DiscourseUnavailable as exc:
            raise TransientDeliveryError(f"Discourse unavailable: {exc}", retry_after=exc.retry_after) from None
        except DiscourseAuthError as exc:
            # An operator can fix the key; keep retrying with backoff until max_attempts.
            raise TransientDeliveryError(f"Discourse refused our API key ({exc}); check [kb] api_key") from None
        except DiscourseRejected as exc:
            raise PermanentDeliveryError(f"Discourse rejected the topic: {'; '.join(exc.errors)}") from None
        except OSError as exc:
            raise TransientDeliveryError(f"a KB image could not be read from the store: {exc.strerror}") from None
        except DiscourseBadResponse as exc:
            raise TransientDeliveryError(f"unexpected answer from Discourse: {exc}") from None
        await self._cases.record_publication(number, created.url)
        return str(created.topic_id)
