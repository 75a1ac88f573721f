"""What the Telegram bot says, in es / pt / en: the customer's commands and the agents' desk.

Core's texts (acknowledgements, the type question) stay in core.texts; these are the words
only this channel needs.
"""

from __future__ import annotations

from collections.abc import Mapping

from posventa.core.contacts.privacy import is_erased_name
from posventa.core.domain import Activity
from posventa.core.texts import Texts, localized

_T: Mapping[str, Mapping[str, str]] = {
    # --- customers -------------------------------------------------------------------------
    "start": {
        "es": "¡Hola{name}! Soy el asistente de soporte de {company}.\n"
              "Cuéntame qué pasó (puedes enviar texto, fotos, documentos o notas de voz) y abro un caso; "
              "un agente te responde por aquí.\n\n"
              "/cases: tus casos · /new: un caso nuevo · /agent: hablar con una persona · /help: ayuda",
        "pt": "Olá{name}! Sou o assistente de suporte da {company}.\n"
              "Conte o que aconteceu (texto, fotos, documentos ou mensagens de voz) e eu abro um caso; "
              "um atendente responde por aqui.\n\n"
              "/cases: seus casos · /new: um caso novo · /agent: falar com uma pessoa · /help: ajuda",
        "en": "Hi{name}! I'm {company}'s support assistant.\n"
              "Tell me what happened (text, photos, documents or voice notes are fine) and I'll open a case; "
              "an agent will answer you right here.\n\n"
              "/cases: your cases · /new: a new case · /agent: talk to a person · /help: help",
    },
    "help": {
        "es": "Escribe tu consulta y la sumo a tu caso abierto (o abro uno nuevo).\n"
              "/cases: ver tus casos\n/new: abrir un caso nuevo (por ejemplo: /new la impresora no imprime)\n"
              "/agent: pedir que te atienda una persona\n/help: esta ayuda",
        "pt": "Escreva sua mensagem e eu a adiciono ao seu caso aberto (ou abro um novo).\n"
              "/cases: ver seus casos\n/new: abrir um caso novo (por exemplo: /new a impressora não imprime)\n"
              "/agent: pedir atendimento de uma pessoa\n/help: esta ajuda",
        "en": "Write your question and I'll add it to your open case (or open a new one).\n"
              "/cases: see your cases\n/new: open a new case (e.g. /new the printer does not print)\n"
              "/agent: ask for a person\n/help: this help",
    },
    "no_cases": {
        "es": "Todavía no tienes casos. Escribe tu consulta y abro uno.",
        "pt": "Você ainda não tem casos. Escreva sua mensagem e eu abro um.",
        "en": "You have no cases yet. Write your question and I'll open one.",
    },
    "cases_header": {"es": "Tus casos:", "pt": "Seus casos:", "en": "Your cases:"},
    "new_case_prompt": {
        "es": "Cuéntame el nuevo problema: tu próximo mensaje abre un caso nuevo.",
        "pt": "Conte o novo problema: sua próxima mensagem abre um caso novo.",
        "en": "Tell me about the new problem: your next message opens a new case.",
    },
    "agent_requested": {
        "es": "🙋 El cliente pide hablar con una persona.",
        "pt": "🙋 O cliente pede para falar com uma pessoa.",
        "en": "🙋 The customer asks to talk to a person.",
    },
    "agent_no_case": {
        "es": "Escribe tu consulta en un mensaje y un agente te responderá por aquí.",
        "pt": "Escreva sua dúvida numa mensagem e um atendente responderá por aqui.",
        "en": "Write your question in a message and an agent will answer you here.",
    },
    "file_too_large": {
        "es": "[archivo «{name}» de {size} no guardado: supera el límite de {limit}]",
        "pt": "[arquivo «{name}» de {size} não salvo: excede o limite de {limit}]",
        "en": "[file “{name}” of {size} not stored: over the {limit} limit]",
    },
    "file_unavailable": {
        "es": "[archivo «{name}» no disponible]",
        "pt": "[arquivo «{name}» indisponível]",
        "en": "[file “{name}” unavailable]",
    },
    # --- agents' desk (in the service's default language) ---------------------------------------
    "desk_refusal": {
        "es": "Hola{name}. Este grupo es el escritorio de soporte: solo los agentes habilitados pueden "
              "responder casos aquí. Si deberías tener acceso, pídeselo a un administrador.",
        "pt": "Olá{name}. Este grupo é a mesa de suporte: só atendentes autorizados podem responder "
              "casos aqui. Se você deveria ter acesso, peça a um administrador.",
        "en": "Hi{name}. This group is the support desk: only authorised agents can answer cases here. "
              "If you should have access, ask an administrator.",
    },
    "desk_anonymous": {
        "es": "No puedo saber qué agente escribe como administrador anónimo: escribe con tu propia cuenta.",
        "pt": "Não sei qual atendente escreve como administrador anônimo: escreva com sua própria conta.",
        "en": "I can't tell which agent writes as an anonymous admin: please write as yourself.",
    },
    "desk_available": {
        "es": "{name}: disponible. Te asignaremos casos nuevos hasta que escribas /away.",
        "pt": "{name}: disponível. Você vai receber casos novos até escrever /away.",
        "en": "{name}: available. New cases will be assigned to you until you say /away.",
    },
    "desk_away": {
        "es": "{name}: ausente. No te asignaremos casos nuevos (escribe /available para volver).",
        "pt": "{name}: ausente. Você não vai receber casos novos (escreva /available para voltar).",
        "en": "{name}: away. No new cases will be assigned to you (say /available to come back).",
    },
    "desk_unknown_agent": {
        "es": "No sé qué agente de la consola eres: un administrador debe cargar tu id de Telegram ({user_id}).",
        "pt": "Não sei qual agente do console você é: um administrador deve cadastrar seu id do Telegram ({user_id}).",
        "en": "I don't know which console agent you are: an admin must set your Telegram user id ({user_id}).",
    },
    "desk_no_case": {
        "es": "Este tema no corresponde a un caso: usa los comandos dentro del tema de un caso.",
        "pt": "Este tópico não corresponde a um caso: use os comandos dentro do tópico de um caso.",
        "en": "This topic is not a case: use the commands inside a case's topic.",
    },
    "desk_text_only": {
        "es": "Al cliente le llegan textos, fotos y documentos; este adjunto no se envió.",
        "pt": "Ao cliente chegam textos, fotos e documentos; este anexo não foi enviado.",
        "en": "Texts, photos and documents reach the customer; this attachment was not sent.",
    },
    "desk_file_refused": {
        "es": "⚠️ No se envió al cliente: «{name}» no se acepta. {reason}",
        "pt": "⚠️ Não enviado ao cliente: «{name}» não é aceito. {reason}",
        "en": "⚠️ Not sent to the customer: “{name}” is refused. {reason}",
    },
    "desk_unknown_command": {
        "es": "Comando desconocido: /{command}.\n{help}",
        "pt": "Comando desconhecido: /{command}.\n{help}",
        "en": "Unknown command: /{command}.\n{help}",
    },
    "desk_help": {
        "es": "Escribe en el tema (o envía una foto o un documento) y le llega al cliente por su canal. Comandos:\n"
              "/type solicitud|reclamo|incidente · /category ID [SUB] · /derive SECTOR · /assign [NOMBRE]\n"
              "/note TEXTO (interna) · /m RESPUESTA (predefinida) · /answer · /close · /publish · /link URL · /nopublish · /contact\n"
              "/available · /away: recibir o no casos asignados automáticamente",
        "pt": "Escreva no tópico (ou envie uma foto ou um documento) e a mensagem chega ao cliente pelo canal dele. Comandos:\n"
              "/type solicitacao|reclamacao|incidente · /category ID [SUB] · /derive SETOR · /assign [NOME]\n"
              "/note TEXTO (interna) · /m RESPOSTA (pronta) · /answer · /close · /publish · /link URL · /nopublish · /contact\n"
              "/available · /away: receber ou não casos atribuídos automaticamente",
        "en": "Write in the topic (or send a photo or a document) and it reaches the customer on their channel. Commands:\n"
              "/type request|complaint|incident · /category ID [SUB] · /derive SECTOR · /assign [NAME]\n"
              "/note TEXT (internal) · /m NAME (canned response) · /answer · /close · /publish · /link URL · /nopublish · /contact\n"
              "/available · /away: take automatically assigned cases, or not",
    },
    "desk_contact": {
        "es": "👤 Contacto #{id}: {name}{organization}\nIdentidades: {identities}\nCasos: {cases}{duplicates}",
        "pt": "👤 Contato #{id}: {name}{organization}\nIdentidades: {identities}\nCasos: {cases}{duplicates}",
        "en": "👤 Contact #{id}: {name}{organization}\nIdentities: {identities}\nCases: {cases}{duplicates}",
    },
    # An erased contact's name (stored in English, core.contacts.privacy.erased_name).
    "desk_erased_contact": {"es": "contacto borrado #{id}", "pt": "contato apagado #{id}",
                            "en": "erased contact #{id}"},
    "desk_duplicates": {
        "es": "\n⚠️ Posibles duplicados: {ids} (fusionar en la consola)",
        "pt": "\n⚠️ Possíveis duplicados: {ids} (mesclar no console)",
        "en": "\n⚠️ Possible duplicates: {ids} (merge them in the console)",
    },
    "desk_usage": {"es": "Uso: {usage}", "pt": "Uso: {usage}", "en": "Usage: {usage}"},
    "desk_error": {"es": "⚠️ No se pudo: {error}", "pt": "⚠️ Não foi possível: {error}",
                   "en": "⚠️ Could not do it: {error}"},
    "desk_needs_type": {
        "es": "⚠️ El caso no tiene tipo. Indicalo antes de {move}: /type solicitud, /type reclamo o /type incidente",
        "pt": "⚠️ O caso não tem tipo. Informe antes de {move}: /type solicitação, /type reclamação ou /type incidente",
        "en": "⚠️ The case has no type. Set it before you {move}: /type request, /type complaint or /type incident"},
    "desk_move_answer_sent": {"es": "marcarlo como respondido", "pt": "marcá-lo como respondido",
                              "en": "mark it answered"},
    "desk_move_closed": {"es": "cerrarlo", "pt": "encerrá-lo", "en": "close it"},
    "desk_stale": {
        "es": "⚠️ No se envió: llegó algo nuevo al caso después de lo que habías leído aquí (el cliente escribió u "
              "otro agente respondió). Léelo y, si tu respuesta sigue valiendo, envíala de nuevo.",
        "pt": "⚠️ Não enviado: chegou algo novo no caso depois do que você tinha lido aqui (o cliente escreveu ou "
              "outro agente respondeu). Leia e, se a sua resposta ainda valer, envie de novo.",
        "en": "⚠️ Not sent: something new reached the case after what you had read here (the customer wrote or "
              "another agent replied). Read it and, if your reply still stands, send it again."},
    "desk_typing_one": {
        "es": "✍️ Ojo: {names} está escribiendo una respuesta a este caso en la consola.",
        "pt": "✍️ Atenção: {names} está escrevendo uma resposta a este caso no console.",
        "en": "✍️ Heads up: {names} is typing a reply to this case in the console."},
    "desk_typing_many": {
        "es": "✍️ Ojo: {names} están escribiendo una respuesta a este caso en la consola.",
        "pt": "✍️ Atenção: {names} estão escrevendo uma resposta a este caso no console.",
        "en": "✍️ Heads up: {names} are typing a reply to this case in the console."},
    "desk_reply_failed": {
        "es": "⚠️ No se envió al cliente: {error}", "pt": "⚠️ Não enviado ao cliente: {error}",
        "en": "⚠️ Not sent to the customer: {error}"},
    "ok_type": {"es": "✅ Tipo: {value}", "pt": "✅ Tipo: {value}", "en": "✅ Type: {value}"},
    "ok_category": {"es": "✅ Categoría: {value}", "pt": "✅ Categoria: {value}", "en": "✅ Category: {value}"},
    "ok_derive": {"es": "✅ Derivado a {value}", "pt": "✅ Encaminhado para {value}", "en": "✅ Derived to {value}"},
    "ok_assign": {"es": "✅ Asignado a {value}", "pt": "✅ Atribuído a {value}", "en": "✅ Assigned to {value}"},
    "ok_unassign": {"es": "✅ Sin asignar", "pt": "✅ Sem atribuição", "en": "✅ Unassigned"},
    "ok_macro": {"es": "📨 Enviado «{name}»:\n{text}", "pt": "📨 Enviado «{name}»:\n{text}",
                 "en": "📨 Sent “{name}”:\n{text}"},
    "ok_note": {"es": "📝 Nota interna guardada (no se envía al cliente).",
                "pt": "📝 Nota interna salva (não é enviada ao cliente).",
                "en": "📝 Internal note saved (never sent to the customer)."},
    "ok_answer": {"es": "✅ Marcado: respuesta enviada", "pt": "✅ Marcado: resposta enviada",
                  "en": "✅ Marked: answer sent"},
    "ok_close": {"es": "✅ Caso cerrado", "pt": "✅ Caso encerrado", "en": "✅ Case closed"},
    "ok_publish": {"es": "✅ Se publicará la solución en la base de conocimiento",
                   "pt": "✅ A solução será publicada na base de conhecimento",
                   "en": "✅ The solution will be published to the knowledge base"},
    "ok_link": {"es": "✅ Vinculado a {value}", "pt": "✅ Vinculado a {value}", "en": "✅ Linked to {value}"},
    "ok_nopublish": {"es": "✅ No se publica", "pt": "✅ Não será publicado", "en": "✅ Not published"},
    "categories": {"es": "Categorías (ID):", "pt": "Categorias (ID):", "en": "Categories (ID):"},
    "no_categories": {"es": "No hay categorías cargadas.", "pt": "Não há categorias cadastradas.",
                      "en": "No categories are set up."},
    # The header card of a case's topic.
    "card_case": {"es": "Caso", "pt": "Caso", "en": "Case"},
    "card_customer": {"es": "Cliente", "pt": "Cliente", "en": "Customer"},
    "card_channel": {"es": "Canal", "pt": "Canal", "en": "Channel"},
    "card_type": {"es": "Tipo", "pt": "Tipo", "en": "Type"},
    "card_category": {"es": "Categoría", "pt": "Categoria", "en": "Category"},
    "card_activity": {"es": "Actividad", "pt": "Atividade", "en": "Activity"},
    "card_assigned": {"es": "Asignado", "pt": "Atribuído", "en": "Assigned"},
    "card_survey": {"es": "Encuesta con respuesta detractora", "pt": "Pesquisa com resposta detratora",
                    "en": "Survey with a detractor answer"},
    "card_sale": {"es": "venta", "pt": "venda", "en": "sale"},
    "card_suggestions": {"es": "Sugerencias", "pt": "Sugestões", "en": "Suggestions"},
    "card_none": {"es": "—", "pt": "—", "en": "—"},
}

_ACTIVITY: Mapping[str, Mapping[str, str]] = {
    Activity.PRELIMINARY_ANALYSIS: {"es": "Análisis preliminar", "pt": "Análise preliminar",
                                    "en": "Preliminary analysis"},
    Activity.DERIVED: {"es": "Derivado", "pt": "Encaminhado", "en": "Derived"},
    Activity.ANSWER_SENT: {"es": "Respuesta enviada", "pt": "Resposta enviada", "en": "Answer sent"},
    Activity.CLOSED: {"es": "Finalizado", "pt": "Finalizado", "en": "Closed"},
}


#: The Telegram bot's texts.
t = Texts(_T)


def activity_name(activity: str, language: str) -> str:
    names = _ACTIVITY.get(activity)
    return localized(names, language) if names else activity


def contact_name(name: str | None, contact_id: object, language: str) -> str | None:
    """A contact's name as the desk shows it: an erased contact's in the desk's language
    (only the exact name erasure gave that very contact), any other as it is."""
    return t("desk_erased_contact", language, id=contact_id) if is_erased_name(name, contact_id) else name


def all_languages(key: str) -> frozenset[str]:
    """Every translation of ``key`` (to recognise our own prompt whatever its language)."""
    return frozenset(_T[key].values())
