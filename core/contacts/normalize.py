"""How contact data is written down: addresses, phones, domains and search terms.

Every door (the inbox, the web chat, the API, the console, sales imports) normalises
through here, so ``Ana@Cliente.com`` typed in one place finds ``ana@cliente.com``
stored by another.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

import phonenumbers

from posventa.core.errors import ValidationError, explain

MAX_NAME = 200
MAX_ADDRESS = 320
MAX_TERM = 200
#: A contact's name contributes at most this many words to the search index.
MAX_NAME_TERMS = 12

#: Mail providers anyone can sign up with: a domain like these says nothing about an
#: organization, so none may be listed on one.
PUBLIC_EMAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "hotmail.com", "hotmail.es", "hotmail.com.ar", "hotmail.com.br",
    "outlook.com", "outlook.es", "outlook.com.ar", "outlook.com.br", "live.com", "live.com.ar", "msn.com",
    "yahoo.com", "yahoo.es", "yahoo.com.ar", "yahoo.com.br", "yahoo.com.mx", "ymail.com", "icloud.com",
    "me.com", "mac.com", "aol.com", "protonmail.com", "proton.me", "pm.me", "gmx.com", "gmx.net", "mail.com",
    "zoho.com", "yandex.com", "yandex.ru", "qq.com", "163.com", "uol.com.br", "bol.com.br", "terra.com.br",
    "ig.com.br", "fibertel.com.ar", "arnet.com.ar", "speedy.com.ar", "tutanota.com", "hey.com",
})

_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_TERM_JUNK = re.compile(r"[^\w@.+\-]+", re.UNICODE)


def email_address(value: object, field: str = "email") -> str:
    """A lower-case email address, or a 422 naming ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(explain("email_missing", "%(field)s must be an email address", field=field), field=field)
    address = value.strip().lower()
    local, at, domain = address.rpartition("@")
    if (not at or not local or len(address) > MAX_ADDRESS or any(c in address for c in " \t\r\n<>,;\"\x00")
            or not _DOMAIN.match(domain)):
        raise ValidationError(explain("email_invalid", "%(field)s is not an email address: %(value)r", field=field,
                                      value=value[:80]), field=field)
    return address


def email_domain(address: str) -> str:
    return address.rsplit("@", 1)[-1]


def phone_number(value: object, field: str = "phone", *, region: str = "AR") -> str:
    """A phone number in E.164 (+5491155551234), or a 422 naming ``field``.

    Numbers without a country code are read as numbers of ``region``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 50 or "\x00" in value:
        raise ValidationError(explain("phone_missing", "%(field)s must be a phone number", field=field), field=field)
    try:
        parsed = phonenumbers.parse(value, region.upper())
    except phonenumbers.NumberParseException:
        raise ValidationError(explain("phone_unreadable", "%(field)s is not a phone number: %(value)r", field=field,
                                      value=value[:50]), field=field) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(explain("phone_invalid", "%(field)s is not a valid phone number: %(value)r", field=field,
                                      value=value[:50]), field=field)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def organization_domain(value: object, field: str = "domains") -> str:
    """A lower-case domain an organization may list: real, and not a public mail provider."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(explain("domains_not_list", "%(field)s must be a list of domains", field=field), field=field)
    domain = value.strip().lower().removeprefix("@")
    if not _DOMAIN.match(domain):
        raise ValidationError(explain("domain_invalid", "%(field)s: %(value)r is not a domain", field=field,
                                      value=value[:80]), field=field)
    if domain in PUBLIC_EMAIL_DOMAINS:
        raise ValidationError(explain("domain_public", "%(field)s: %(domain)s is a public mail domain; anyone can "
                                      "have an address there", field=field, domain=domain), field=field)
    return domain


def fold(text: str) -> str:
    """Lower-case, accents removed: "Pérez" and "perez" are the same word to a search."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def terms_for(name: str | None, identities: Iterable[tuple[str, str]]) -> set[str]:
    """The search terms of a contact: each word of its name, each identity address (and
    an email's domain, a phone's digits without the plus)."""
    terms: set[str] = set()
    for word in search_words(name or "")[:MAX_NAME_TERMS]:
        terms.add(word)
    for channel, address in identities:
        folded = fold(address)[:MAX_TERM]
        terms.add(folded)
        if channel == "email" and "@" in folded:
            terms.add(folded.rsplit("@", 1)[1])
        if channel == "phone":
            digits = folded.lstrip("+")
            terms.add(digits)
            national = _national_digits(address)
            if national:
                terms.add(national)
    return {t for t in terms if t}


def search_words(text: str) -> list[str]:
    """The words of ``text`` folded as the stored terms are."""
    return [w for w in (_TERM_JUNK.sub("", w)[:MAX_TERM] for w in fold(text).split()) if w]


def national_form(dialled: str, region: str) -> str | None:
    """The national digits of a number as dialled in ``region`` ("011 4567-8901" in AR is
    1145678901, the trunk prefix dropped), the form terms_for stores beside the E.164;
    None when it is not a possible number there (a partial one is searched as typed)."""
    try:
        parsed = phonenumbers.parse(dialled, region.upper())
    except phonenumbers.NumberParseException:
        return None
    return str(parsed.national_number) if phonenumbers.is_possible_number(parsed) else None


def _national_digits(e164: str) -> str | None:
    try:
        return str(phonenumbers.parse(e164, None).national_number)
    except phonenumbers.NumberParseException:
        return None
