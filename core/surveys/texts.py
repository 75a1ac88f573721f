"""What the survey bot says, in es / pt / en (looked up as every customer-facing text is,
``core.texts.Texts``)."""

from __future__ import annotations

from collections.abc import Mapping

from posventa.core.texts import YES_NO_WORDS, Texts, Translations

_TEXTS: Mapping[str, Translations] = {
    "intro": {
        "es": "¡Hola{name}! ¿Nos ayudas con una breve encuesta sobre {product}? Son {count} preguntas.",
        "pt": "Olá{name}! Pode nos ajudar com uma breve pesquisa sobre {product}? São {count} perguntas.",
        "en": "Hi{name}! Could you help us with a short survey about {product}? It's {count} questions.",
    },
    "intro_one": {
        "es": "¡Hola{name}! ¿Nos ayudas con una pregunta sobre {product}?",
        "pt": "Olá{name}! Pode nos ajudar com uma pergunta sobre {product}?",
        "en": "Hi{name}! Could you help us with one question about {product}?",
    },
    "progress": {"es": "({n}/{total})", "pt": "({n}/{total})", "en": "({n}/{total})"},
    "hint_number": {
        "es": "Responde con un número del {low} al {high}.",
        "pt": "Responda com um número de {low} a {high}.",
        "en": "Reply with a number from {low} to {high}.",
    },
    "hint_yes_no": {"es": "Responde sí o no.", "pt": "Responda sim ou não.", "en": "Reply yes or no."},
    "hint_email": {
        "es": "Puedes responder a este correo.",
        "pt": "Você pode responder a este e-mail.",
        "en": "You can reply to this email.",
    },
    "retry": {
        "es": "Perdón, no entendí tu respuesta. {hint}",
        "pt": "Desculpe, não entendi sua resposta. {hint}",
        "en": "Sorry, I didn't get that. {hint}",
    },
    "thanks": {
        "es": "¡Gracias por tus respuestas! Nos ayudan a mejorar.",
        "pt": "Obrigado pelas suas respostas! Elas nos ajudam a melhorar.",
        "en": "Thank you for your answers! They help us improve.",
    },
    "escalated": {
        "es": "Entendido. Un agente te va a atender; dejamos la encuesta en pausa.",
        "pt": "Entendido. Um atendente vai falar com você; deixamos a pesquisa em pausa.",
        "en": "Understood. An agent will get back to you; we've paused the survey.",
    },
    "gave_up": {
        "es": "Gracias. Dejamos la encuesta aquí; un agente leerá tu mensaje.",
        "pt": "Obrigado. Paramos a pesquisa aqui; um atendente vai ler sua mensagem.",
        "en": "Thanks. We'll stop the survey here; an agent will read your message.",
    },
    "reminder": {
        "es": "Te recordamos nuestra breve encuesta; nos ayudaría mucho tu respuesta.",
        "pt": "Lembrete da nossa breve pesquisa; sua resposta nos ajudaria muito.",
        "en": "A quick reminder of our short survey; your answer would help us a lot.",
    },
    "closed": {
        "es": "Esta encuesta ya está cerrada. ¡Gracias!",
        "pt": "Esta pesquisa já foi encerrada. Obrigado!",
        "en": "This survey is already closed. Thank you!",
    },
    "resumed": {
        "es": "Retomamos la encuesta donde la dejamos.",
        "pt": "Retomamos a pesquisa de onde paramos.",
        "en": "Let's pick the survey up where we left it.",
    },
    "followup": {
        "es": "Hace poco nos contaste un problema y cerramos tu caso. ¿Se resolvió tu problema?",
        "pt": "Há pouco você nos contou um problema e encerramos seu caso. Seu problema foi resolvido?",
        "en": "You recently told us about a problem and we closed your case. Was your problem solved?",
    },
    "followup_thanks": {
        "es": "¡Gracias por contarnos!",
        "pt": "Obrigado por nos contar!",
        "en": "Thank you for letting us know!",
    },
    **YES_NO_WORDS,
}

#: The survey bot's texts.
say = Texts(_TEXTS)
