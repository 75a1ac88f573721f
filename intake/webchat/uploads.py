"""Files in the web chat: ``POST /chat/files`` (the widget's attach button) and
``GET /chat/files/{id}`` (a file of the visitor's own conversation). Protocol:
docs/webchat-protocol.md, "Files".

The credential is the one the websocket's hello carries, the session token, here as
``Authorization: Bearer <token>``: only that session can add a file to its case or read
one back. A header, not a cookie, so no other site can make the browser send it; the
``Origin`` policy is the websocket's (a page not allowed to embed the widget is refused).

The body is the file itself, read in chunks: each chunk is checked (size, content:
core/uploads.py) and written to the attachment store's incoming file, so memory stays
bounded and an oversized body is refused as soon as it passes the limit. Once the whole
file is taken it is filed under its hash (fsynced, deduplicated) and becomes a customer
message through ``Inbox.receive``; the answer (the ack) is sent only after that commit.
The client's upload id is the message's client id: a retried upload stores nothing twice.

A refused file is answered with a 4xx whose JSON says why in the visitor's language, and
the same words go to the session's open sockets as an ``error`` frame (this process's;
the HTTP answer is the one the widget relies on).
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from posventa.core.attachments import IncomingFile, safe_filename
from posventa.core.domain import ChannelName, InboundMessage
from posventa.core.errors import StorageUnavailable
from posventa.core.message_files import MessageFiles
from posventa.core.ports import Inbox
from posventa.core.texts import pick_language
from posventa.core.uploads import TOO_LARGE, TYPE_REFUSED, UploadCheck, UploadPolicy, UploadRefused, \
    matching_name, refusal_text
from posventa.core.logs import set_log_fields
from posventa.intake.http import ClientAddresses, file_headers
from posventa.intake.webchat import protocol
from posventa.intake.webchat.hub import Hub
from posventa.intake.webchat.limits import Limits
from posventa.intake.webchat.origin import OriginPolicy
from posventa.intake.webchat.sessions import Session, SessionStore

log = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_NAME_CHARS = 255
#: Statuses of the refusals, by reason.
_STATUS = {TOO_LARGE: 413, TYPE_REFUSED: 415}
FILE_ERROR = "file_refused"


class WebchatUploads:
    def __init__(self, *, policy: UploadPolicy, inbox: Inbox, sessions: SessionStore, hub: Hub,
                 files: MessageFiles, origins: OriginPolicy, limits: Limits, addresses: ClientAddresses) -> None:
        self._policy = policy
        self._inbox = inbox
        self._sessions = sessions
        self._hub = hub
        self._files = files
        self._origins = origins
        self._limits = limits
        self._addresses = addresses

    def install(self, app: web.Application) -> None:
        app.router.add_post("/chat/files", self.upload)
        app.router.add_route("OPTIONS", "/chat/files", self.preflight)
        app.router.add_get("/chat/files/{id}", self.download)
        app.router.add_route("OPTIONS", "/chat/files/{id}", self.preflight)

    # --- CORS: the widget runs on the shop's pages, the files endpoint is ours ---------------

    def _cors(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and self._origins.allows(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        return response

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        if not self._origins.allows(request.headers.get("Origin")):
            return web.Response(status=403, text="origin not allowed")
        response = web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "POST, GET",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
        })
        return self._cors(request, response)

    def _answer(self, request: web.Request, status: int, body: dict, *, headers: dict[str, str] | None = None,
                ) -> web.StreamResponse:
        return self._cors(request, web.json_response(body, status=status, headers=headers))

    def _error(self, request: web.Request, status: int, code: str, message: str, *, client_id: str | None = None,
               field: str | None = None, retry_after: float | None = None,
               reason: str | None = None) -> web.StreamResponse:
        body: dict[str, object] = {"type": "error", "code": code, "message": message}
        if client_id is not None:
            body["id"] = client_id
        if field is not None:
            body["field"] = field
        if reason is not None:
            body["reason"] = reason
        headers = None
        if retry_after is not None:
            body["retry_after"] = round(retry_after, 1)
            headers = {"Retry-After": str(max(1, round(retry_after)))}
        return self._answer(request, status, body, headers=headers)

    async def _session(self, request: web.Request) -> Session | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not 0 < len(token) <= protocol.MAX_TOKEN:
            return None
        return await self._sessions.find(token)

    async def _authenticate(self, request: web.Request) -> Session | web.StreamResponse:
        if not self._origins.allows(request.headers.get("Origin")):
            log.info("web chat files: refused origin %r", request.headers.get("Origin", "")[:200])
            return web.Response(status=403, text="origin not allowed")
        ip = self._addresses.of(request)
        session = await self._session(request)
        if session is None:
            # Wrong tokens cost like new sessions (as at the websocket's hello): guessing is throttled.
            wait = self._limits.new_session.allow(ip)
            if wait:
                return self._error(request, 429, protocol.RATE_LIMITED, "too many attempts", retry_after=wait)
            return self._error(request, 401, protocol.UNAUTHORIZED, "unknown or expired session; "
                                                                    "send the session token as 'Authorization: Bearer'")
        return session

    # --- upload ------------------------------------------------------------------------------

    async def upload(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._upload(request)
        except StorageUnavailable:
            return self._error(request, 503, "unavailable", "storage is unavailable; try again later", retry_after=5)

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        found = await self._authenticate(request)
        if not isinstance(found, Session):
            return found
        session = found
        language = pick_language(session.language, request.headers.get("Accept-Language"))
        client_id = request.query.get("id", "")
        if not _CLIENT_ID.match(client_id):
            return self._error(request, 400, protocol.BAD_REQUEST, "id must be a short string (a UUID)", field="id")
        name = request.query.get("name", "")
        if len(name) > MAX_NAME_CHARS or not protocol.encodable(name):
            return self._error(request, 400, protocol.BAD_REQUEST,
                               f"name must be a file name of at most {MAX_NAME_CHARS} characters",
                               client_id=client_id, field="name")
        if not self._policy.enabled:
            return self._error(request, 403, FILE_ERROR, "this chat takes no files", client_id=client_id)
        wait = self._limits.message(session.public_id, self._addresses.of(request))
        if wait:
            return self._error(request, 429, protocol.RATE_LIMITED, "too many messages; slow down",
                               client_id=client_id, retry_after=wait)
        check = UploadCheck(self._policy)
        declared = request.content_length
        incoming: IncomingFile | None = None
        try:
            if declared is not None and declared > self._policy.max_bytes:
                raise UploadRefused(TOO_LARGE, f"the file is larger than {self._policy.max_bytes} bytes")
            incoming = self._files.receive()
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                check.feed(chunk)
                await incoming.write(chunk)
            content_type = check.finish()
        except UploadRefused as refused:
            if incoming is not None:
                incoming.discard()
            return await self._refuse(request, session, client_id, refused, language)
        except BaseException:
            if incoming is not None:
                incoming.discard()
            raise
        filename = matching_name(safe_filename(name, default="file"), content_type)
        ref = await incoming.keep(filename=filename, content_type=content_type)
        receipt = await self._inbox.receive(InboundMessage(
            channel=ChannelName.WEBCHAT, external_id=f"{session.public_id}:{client_id}", sender=session.public_id,
            text=f"📎 {ref.filename}", sender_name=session.name, language=session.language, attachments=(ref,),
        ))
        set_log_fields(case=receipt.case_number)
        stored = [protocol.attachment(f.id, f.filename, f.content_type, f.size)
                  for f in await self._files.of_message(receipt.message_id)]
        log.info("web chat: %s file of %d bytes stored as message %d", content_type, ref.size, receipt.message_id)
        return self._answer(request, 201, {
            **protocol.ack(client_id, receipt.message_id, receipt.case_number),
            "attachments": stored,
        })

    async def _refuse(self, request: web.Request, session: Session, client_id: str, refused: UploadRefused,
                      language: str) -> web.StreamResponse:
        message = refusal_text(refused, self._policy, language)
        log.info("web chat: refused a file from session %s: %s", session.public_id, refused)
        await self._hub.push(session.public_id, {**protocol.error(FILE_ERROR, message, client_id=client_id),
                                                 "reason": refused.reason})
        status = _STATUS.get(refused.reason, 400)
        # The same frame as on the socket: a client tells "too large" from "not accepted"
        # by ``reason``, not by parsing the message or knowing what 413/415 mean.
        response = self._error(request, status, FILE_ERROR, message, client_id=client_id, field="file",
                               reason=refused.reason)
        if refused.reason == TOO_LARGE:
            # The rest of the body is never read: close rather than keep a connection
            # whose next bytes are the end of this file.
            response.force_close()
        return response

    # --- download ----------------------------------------------------------------------------

    async def download(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._download(request)
        except StorageUnavailable:
            return self._error(request, 503, "unavailable", "storage is unavailable; try again later", retry_after=5)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        found = await self._authenticate(request)
        if not isinstance(found, Session):
            return found
        raw = request.match_info["id"]
        file = None
        if raw.isdigit() and len(raw) < 19:
            # The session's own conversation: its files, and the agents' files to it.
            file = await self._files.in_conversation(int(raw), contact_id=found.contact_id,
                                                     channel=ChannelName.WEBCHAT)
        if file is None:
            # Another session's file is as unknown as one that does not exist.
            return self._error(request, 404, "not_found", "no such file in this chat", field="id")
        path = self._files.path(file)
        if not path.is_file():
            return self._error(request, 404, "not_found", "the file is missing from the store", field="id")
        return self._cors(request, web.FileResponse(path, headers={**file_headers(file.filename, file.content_type),
                                                                   "Cache-Control": "private, no-store"}))


__all__ = ["FILE_ERROR", "WebchatUploads"]
