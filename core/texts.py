"""Customer-facing bot texts in es / pt / en, and the one way to look such a text up.

Every customer-facing table (this one, the survey bot's in ``core/surveys/texts.py``, the
Telegram bot's in ``bots/telegram/texts.py``) maps a key to its translations; ``Texts``
picks the customer's language, falls back to Spanish, and fills the parameters. The
console's own texts are gettext catalogs (``intake/console/locale``), not these.
"""

from __future__ import annotations

from collections.abc import Mapping

from posventa.core.domain import LANGUAGES, CaseType

#: What every table has, and what a missing translation falls back to.
FALLBACK_LANGUAGE = "es"

Translations = Mapping[str, str]


def localized(translations: Translations, language: str) -> str:
    """The text in ``language``, else in Spanish."""
    return translations.get(language) or translations[FALLBACK_LANGUAGE]


class Texts:
    """A table of customer-facing texts: ``texts(key, language, **params)``."""

    def __init__(self, table: Mapping[str, Translations]) -> None:
        self._table = table

    def __call__(self, key: str, language: str, **params: object) -> str:
        return localized(self._table[key], language).format(**params)

    def translations(self, key: str) -> Translations:
        return self._table[key]


#: "Yes" and "No" as buttons and list items, for every table that offers them.
YES_NO_WORDS: Mapping[str, Translations] = {
    "yes": {"es": "Sí", "pt": "Sim", "en": "Yes"},
    "no": {"es": "No", "pt": "Não", "en": "No"},
}

_TEXTS: Mapping[str, Translations] = {
    "ack_new_case": {
        "es": "¡Gracias! Recibimos tu mensaje y abrimos el caso #{number}. Te responderemos pronto.",
        "pt": "Obrigado! Recebemos sua mensagem e abrimos o caso #{number}. Responderemos em breve.",
        "en": "Thanks! We received your message and opened case #{number}. We'll get back to you soon.",
    },
    "ask_case_type": {
        "es": "Para ayudarte mejor, ¿tu consulta es una solicitud, un reclamo o un incidente?",
        "pt": "Para ajudar melhor, sua mensagem é uma solicitação, uma reclamação ou um incidente?",
        "en": "To help you faster: is this a request, a complaint or an incident?",
    },
    "type_recorded": {
        "es": "Anotado: {type}. Caso #{number}.",
        "pt": "Anotado: {type}. Caso #{number}.",
        "en": "Noted: {type}. Case #{number}.",
    },
    "suggestions_intro": {
        "es": "Mientras tanto, esto puede ayudarte:",
        "pt": "Enquanto isso, isto pode ajudar:",
        "en": "Meanwhile, this may help:",
    },
    "did_it_solve": {
        "es": "¿Esto resolvió tu consulta?",
        "pt": "Isso resolveu sua dúvida?",
        "en": "Did this solve it?",
    },
    "self_served": {
        "es": "¡Genial! Cerramos el caso #{number}. Si necesitas algo más, escríbenos.",
        "pt": "Ótimo! Encerramos o caso #{number}. Se precisar de algo mais, escreva para nós.",
        "en": "Great! We closed case #{number}. If you need anything else, just write.",
    },
    "self_served_ask_type": {
        "es": "¡Genial! Para cerrar el caso #{number}, contanos: ¿era una solicitud, un reclamo o un incidente?",
        "pt": "Ótimo! Para encerrar o caso #{number}, diga: era uma solicitação, uma reclamação ou um incidente?",
        "en": "Great! To close case #{number}, tell us: was it a request, a complaint or an incident?",
    },
    "agent_will_answer": {
        "es": "Entendido. Un agente te responderá en el caso #{number}.",
        "pt": "Entendido. Um atendente vai responder no caso #{number}.",
        "en": "Understood. An agent will answer you in case #{number}.",
    },
    "case_reopened": {
        "es": "Reabrimos el caso #{number} con tu mensaje. Te responderemos pronto.",
        "pt": "Reabrimos o caso #{number} com sua mensagem. Responderemos em breve.",
        "en": "We reopened case #{number} with your message. We'll get back to you soon.",
    },
    "upload_too_large": {
        "es": "El archivo es demasiado grande: el máximo es {max}.",
        "pt": "O arquivo é grande demais: o máximo é {max}.",
        "en": "The file is too large: the limit is {max}.",
    },
    "upload_type_refused": {
        "es": "Ese tipo de archivo no se acepta. Puedes enviar: {kinds}.",
        "pt": "Esse tipo de arquivo não é aceito. Você pode enviar: {kinds}.",
        "en": "That type of file is not accepted. You can send: {kinds}.",
    },
    "upload_empty": {
        "es": "El archivo está vacío.",
        "pt": "O arquivo está vazio.",
        "en": "The file is empty.",
    },
    "upload_kind_image": {"es": "imágenes", "pt": "imagens", "en": "images"},
    "upload_kind_pdf": {"es": "PDF", "pt": "PDF", "en": "PDF"},
    "upload_kind_text": {"es": "texto", "pt": "texto", "en": "plain text"},
    **YES_NO_WORDS,
}

_CASE_TYPE_NAMES: Mapping[CaseType, Mapping[str, str]] = {
    CaseType.REQUEST: {"es": "Solicitud", "pt": "Solicitação", "en": "Request"},
    CaseType.COMPLAINT: {"es": "Reclamo", "pt": "Reclamação", "en": "Complaint"},
    CaseType.INCIDENT: {"es": "Incidente", "pt": "Incidente", "en": "Incident"},
    CaseType.UNCLASSIFIED: {"es": "Sin clasificar", "pt": "Não classificado", "en": "Unclassified"},
}


def pick_language(*candidates: str | None, default: str = "es") -> str:
    """The first candidate that is (or starts with) a supported language, e.g. "pt-BR" → "pt"."""
    for candidate in candidates:
        if candidate:
            code = candidate.strip().lower()[:2]
            if code in LANGUAGES:
                return code
    return default


#: The core bot's texts (acknowledgements, the case type question, notices...).
text = Texts(_TEXTS)


def case_type_name(case_type: CaseType | str, language: str) -> str:
    # CaseType(...) only for a plain string: the enum lookup costs more than the rest,
    # and every new case's greeting names the three types.
    names = _CASE_TYPE_NAMES[case_type if type(case_type) is CaseType else CaseType(case_type)]
    return localized(names, language)
