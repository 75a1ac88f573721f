"""/metrics answers only an allowed client address or the bearer token (issue 16 §5),
over real HTTP against a running Service. The address is the one ``ClientAddresses``
finds: X-Forwarded-For counts only from a trusted proxy."""

from __future__ import annotations

import aiohttp
import pytest

from posventa.service import Service
from tests.support import make_config

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TOKEN = "metrics-token-0123456789"


async def scrape(service: Service, **headers: str) -> tuple[int, str, str | None]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{service.http.bound_port}/metrics", headers=headers) as r:
        return r.status, await r.text(), r.headers.get("WWW-Authenticate")


@sqlite_only
async def test_loopback_is_allowed_by_default(database_url, tmp_path):
    async with Service(make_config(database_url, tmp_path)) as service:
        status, body, _ = await scrape(service)
    assert status == 200 and "posventa_inbox_batches" in body


@sqlite_only
async def test_an_address_outside_the_allow_list_is_refused(database_url, tmp_path):
    config = make_config(database_url, tmp_path, http={"metrics_allow_from": ("10.0.0.0/8",)})
    async with Service(config) as service:
        status, body, challenge = await scrape(service)
        assert status == 403 and "posventa_" not in body and challenge is None
        # Not a trusted proxy: naming an allowed address in X-Forwarded-For changes nothing.
        status, body, _ = await scrape(service, **{"X-Forwarded-For": "10.1.2.3"})
        assert status == 403 and "posventa_" not in body


@sqlite_only
async def test_behind_a_trusted_proxy_the_forwarded_address_is_checked(database_url, tmp_path):
    config = make_config(database_url, tmp_path, http={"metrics_allow_from": ("10.0.0.0/8",),
                                                        "trusted_proxies": ("127.0.0.1/32",)})
    async with Service(config) as service:
        assert (await scrape(service, **{"X-Forwarded-For": "10.1.2.3"}))[0] == 200
        assert (await scrape(service, **{"X-Forwarded-For": "10.1.2.3, 203.0.113.9"}))[0] == 403
        assert (await scrape(service))[0] == 403  # the proxy itself is not in the list


@sqlite_only
async def test_the_bearer_token_opens_it_from_anywhere(database_url, tmp_path):
    config = make_config(database_url, tmp_path, http={"metrics_allow_from": (), "metrics_token": TOKEN})
    async with Service(config) as service:
        status, body, challenge = await scrape(service)
        assert status == 401 and challenge == 'Bearer realm="metrics"' and "posventa_" not in body
        assert (await scrape(service, Authorization=f"Bearer {TOKEN}x"))[0] == 401
        assert (await scrape(service, Authorization=TOKEN))[0] == 401
        status, body, _ = await scrape(service, Authorization=f"Bearer {TOKEN}")
        assert status == 200 and "posventa_inbox_batches" in body
