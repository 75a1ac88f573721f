/*
 * posventa web chat widget. Plain JavaScript, no build step, no dependencies.
 *
 * Embed:  <script src="https://support.example.com/chat/widget.js" data-lang="es"></script>
 * Options (attributes of that script tag):
 *   data-lang     "es" | "pt" | "en"; otherwise navigator.language, otherwise "es".
 *   data-prechat  "true" asks for name and email before the first message.
 *
 * The server is found from this script's own src: widget.css and the websocket ("ws") are
 * resolved next to widget.js, so /chat/widget.js talks to /chat/ws on the same origin.
 * Protocol: docs/webchat-protocol.md.
 *
 * Security: every string that comes from the server or the user reaches the DOM through
 * textContent / createTextNode only; links are limited to http(s). The only global is
 * window.PosventaChat.
 */
(function () {
  "use strict";
  // A second paste of the snippet on the same page must not open a second socket.
  if (window.PosventaChat) return;

  var BACKOFF_BASE_MS = 1000;
  var BACKOFF_CAP_MS = 30000;
  var MAX_TEXT = 4000; // client-side limit, so most "too_large" errors never happen
  var MAX_FRAME_CHARS = 1 << 20; // a bigger frame is not from a sane server: ignore it
  var MAX_RENDERED = 300; // DOM nodes kept in the log; older ones are dropped from view
  var MAX_QUEUE = 100;
  var MAX_LINKS = 10;
  var MAX_CHOICES = 12;
  var MAX_FILES_AT_ONCE = 5; // a drop of a whole folder must not start a hundred uploads
  var MAX_ATTACHMENTS = 10;
  // Images every browser shows in an <img>; other files are a link to save.
  var PREVIEW_TYPES = { "image/png": 1, "image/jpeg": 1, "image/gif": 1, "image/webp": 1 };

  var TEXTS = {
    es: {
      title: "Soporte", open: "Abrir el chat de soporte", close: "Cerrar el chat",
      log: "Mensajes", input: "Escribe tu mensaje", placeholder: "Escribe tu mensaje…", send: "Enviar",
      connecting: "Conectando…", online: "En línea", offline: "Sin conexión",
      sending: "Enviando…", sent: "Enviado", failed: "No enviado",
      help: "Esto puede ayudarte", caseLabel: "Caso n.º ",
      you: "Tú", agent: "Agente", bot: "Asistente", unread: " mensajes nuevos",
      prechatIntro: "Antes de empezar, cuéntanos quién eres.", name: "Nombre", email: "Correo electrónico",
      start: "Iniciar chat", invalid: "Revisa el nombre y el correo electrónico.",
      rate_limited: "Demasiados mensajes seguidos; lo reintentaremos en unos segundos.",
      too_large: "El mensaje es demasiado largo.", bad_request: "No se pudo enviar el mensaje.",
      unauthorized: "La sesión expiró; empezamos una nueva.", queueFull: "Hay demasiados mensajes pendientes de envío.",
      attach: "Adjuntar un archivo", uploading: "Subiendo…", fileTooLarge: "El archivo es demasiado grande: el máximo es ",
      fileEmpty: "El archivo está vacío.", fileFailed: "No se pudo enviar el archivo.", drop: "Suelta el archivo para enviarlo",
      download: "Descargar "
    },
    pt: {
      title: "Suporte", open: "Abrir o chat de suporte", close: "Fechar o chat",
      log: "Mensagens", input: "Escreva sua mensagem", placeholder: "Escreva sua mensagem…", send: "Enviar",
      connecting: "Conectando…", online: "Online", offline: "Sem conexão",
      sending: "Enviando…", sent: "Enviado", failed: "Não enviado",
      help: "Isto pode ajudar", caseLabel: "Caso nº ",
      you: "Você", agent: "Agente", bot: "Assistente", unread: " mensagens novas",
      prechatIntro: "Antes de começar, diga-nos quem você é.", name: "Nome", email: "E-mail",
      start: "Iniciar conversa", invalid: "Verifique o nome e o e-mail.",
      rate_limited: "Muitas mensagens seguidas; tentaremos de novo em alguns segundos.",
      too_large: "A mensagem é muito longa.", bad_request: "Não foi possível enviar a mensagem.",
      unauthorized: "A sessão expirou; começamos uma nova.", queueFull: "Há mensagens demais aguardando envio.",
      attach: "Anexar um arquivo", uploading: "Enviando arquivo…", fileTooLarge: "O arquivo é grande demais: o máximo é ",
      fileEmpty: "O arquivo está vazio.", fileFailed: "Não foi possível enviar o arquivo.", drop: "Solte o arquivo para enviá-lo",
      download: "Baixar "
    },
    en: {
      title: "Support", open: "Open support chat", close: "Close chat",
      log: "Messages", input: "Type your message", placeholder: "Type your message…", send: "Send",
      connecting: "Connecting…", online: "Online", offline: "Offline",
      sending: "Sending…", sent: "Sent", failed: "Not sent",
      help: "This may help", caseLabel: "Case #",
      you: "You", agent: "Agent", bot: "Assistant", unread: " new messages",
      prechatIntro: "Before we start, tell us who you are.", name: "Name", email: "Email",
      start: "Start chat", invalid: "Please check your name and email.",
      rate_limited: "Too many messages in a row; we will retry in a few seconds.",
      too_large: "The message is too long.", bad_request: "The message could not be sent.",
      unauthorized: "Your session expired; we started a new one.", queueFull: "Too many messages are waiting to be sent.",
      attach: "Attach a file", uploading: "Uploading…", fileTooLarge: "The file is too large: the limit is ",
      fileEmpty: "The file is empty.", fileFailed: "The file could not be sent.", drop: "Drop the file to send it",
      download: "Download "
    }
  };

  // ---- where the server is ---------------------------------------------------------------

  function findOwnScript() {
    // document.currentScript is null only when something re-executes us oddly (e.g. eval);
    // then the last matching tag is the best guess.
    if (document.currentScript && document.currentScript.src) return document.currentScript;
    var all = document.querySelectorAll('script[src*="widget.js"]');
    return all.length ? all[all.length - 1] : null;
  }

  var script = findOwnScript();
  if (!script) return;
  var cssUrl = new URL("widget.css", script.src).href;
  var wsUrlObj = new URL("ws", script.src);
  wsUrlObj.protocol = wsUrlObj.protocol === "https:" ? "wss:" : "ws:";
  wsUrlObj.search = "";
  wsUrlObj.hash = "";
  var wsUrl = wsUrlObj.href;
  var filesUrl = new URL("files", script.src).href.split(/[?#]/)[0];

  function pickLang(attr) {
    var candidates = [attr, navigator.language];
    for (var i = 0; i < candidates.length; i++) {
      var code = String(candidates[i] || "").toLowerCase().slice(0, 2);
      if (TEXTS.hasOwnProperty(code)) return code;
    }
    return "es";
  }

  var lang = pickLang(script.getAttribute("data-lang"));
  var t = TEXTS[lang];
  var prechatWanted = script.getAttribute("data-prechat") === "true";

  // ---- small helpers ---------------------------------------------------------------------

  function uuid() {
    var c = window.crypto;
    // randomUUID exists only in secure contexts; plain-http shops still need unique ids.
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var b = new Uint8Array(16), i;
    if (c && typeof c.getRandomValues === "function") c.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = [];
    for (i = 0; i < 16; i++) h.push((b[i] + 0x100).toString(16).slice(1));
    return h.slice(0, 4).join("") + "-" + h.slice(4, 6).join("") + "-" + h.slice(6, 8).join("") +
      "-" + h.slice(8, 10).join("") + "-" + h.slice(10).join("");
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function isId(v) {
    return (typeof v === "string" && v.length > 0 && v.length <= 128) ||
      (typeof v === "number" && isFinite(v));
  }

  function str(v, max) {
    return typeof v === "string" ? v.slice(0, max) : "";
  }

  function sizeLabel(n) {
    if (n >= 1048576) return (Math.round(n / 104857.6) / 10) + " MB";
    if (n >= 1024) return Math.round(n / 1024) + " KB";
    return n + " B";
  }

  function safeHttpUrl(raw) {
    if (typeof raw !== "string" || raw.length > 2048) return null;
    try {
      var u = new URL(raw);
      return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
    } catch (e) {
      return null;
    }
  }

  // ---- persistent state (localStorage, namespaced per server) ----------------------------

  var storageKey = "posventa-chat:" + wsUrl;
  var memoryStore = null; // used when localStorage is blocked (private mode, cookie settings)

  function loadState() {
    var raw = null;
    try {
      raw = JSON.parse(window.localStorage.getItem(storageKey) || "null");
    } catch (e) {
      raw = memoryStore;
    }
    raw = raw && typeof raw === "object" ? raw : {};
    var queue = Array.isArray(raw.queue) ? raw.queue.filter(function (q) {
      return q && typeof q.id === "string" && (q.kind === "message" || q.kind === "choice") &&
        typeof q.text === "string";
    }).slice(0, MAX_QUEUE) : [];
    var answered = raw.answered && typeof raw.answered === "object" ? raw.answered : {};
    var profile = raw.profile && typeof raw.profile === "object" ? raw.profile : null;
    return {
      session: typeof raw.session === "string" ? raw.session : null,
      lastSeen: isId(raw.lastSeen) ? raw.lastSeen : null,
      queue: queue,
      answered: answered,
      profile: profile && typeof profile.name === "string" && typeof profile.email === "string" ? profile : null
    };
  }

  var state = loadState();

  function saveState() {
    // Keep the answered-question map bounded; only recent surveys matter.
    var keys = Object.keys(state.answered);
    if (keys.length > 50) keys.slice(0, keys.length - 50).forEach(function (k) { delete state.answered[k]; });
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(state));
    } catch (e) {
      memoryStore = JSON.parse(JSON.stringify(state));
    }
  }

  // ---- DOM -------------------------------------------------------------------------------

  var ui = {};
  var seen = {}; // message_id -> true: the dedupe set for history replays and echoes
  var bubbles = {}; // client id -> own message element, until acked
  var unread = 0;
  var mounted = false;
  var openWhenMounted = false;
  // On a fresh page we ask for the whole history (last_seen null); after that, reconnects
  // within the page ask only for what is newer than the last message this page rendered.
  var pageLastSeen = null;
  var unreadAfter = state.lastSeen;

  function mount() {
    var host = el("div");
    host.id = "posventa-chat";
    // Shadow DOM keeps the shop's CSS out of the widget and ours out of the shop.
    var shadow = host.attachShadow({ mode: "open" });
    var link = el("link");
    link.rel = "stylesheet";
    link.href = cssUrl;
    var root = el("div", "pvc-root");
    root.hidden = true; // until the stylesheet arrives, so the shop never sees raw markup
    root.setAttribute("lang", lang);
    link.onload = link.onerror = function () { root.hidden = false; };
    shadow.appendChild(link);
    shadow.appendChild(root);
    ui.shadow = shadow;
    // Escape closes from anywhere in the widget, the bubble included.
    root.addEventListener("keydown", function (e) {
      if (e.key === "Escape" && !ui.panel.hidden) { e.preventDefault(); close(); }
    });

    var bubble = ui.bubble = el("button", "pvc-bubble");
    bubble.type = "button";
    bubble.setAttribute("aria-label", t.open);
    bubble.setAttribute("aria-expanded", "false");
    bubble.setAttribute("aria-controls", "pvc-panel");
    bubble.appendChild(el("span", "pvc-bubble-icon")).setAttribute("aria-hidden", "true");
    ui.badge = bubble.appendChild(el("span", "pvc-badge"));
    ui.badge.hidden = true;
    bubble.addEventListener("click", function () { ui.panel.hidden ? open() : close(); });

    var panel = ui.panel = el("div", "pvc-panel");
    panel.id = "pvc-panel";
    panel.hidden = true;
    panel.setAttribute("role", "dialog");
    panel.setAttribute("aria-labelledby", "pvc-title");

    var header = panel.appendChild(el("div", "pvc-header"));
    var heading = header.appendChild(el("h2", "pvc-title", t.title));
    heading.id = "pvc-title";
    ui.caseNo = header.appendChild(el("span", "pvc-case"));
    ui.state = header.appendChild(el("span", "pvc-state"));
    ui.state.setAttribute("role", "status");
    var closeBtn = header.appendChild(el("button", "pvc-close", "×"));
    closeBtn.type = "button";
    closeBtn.setAttribute("aria-label", t.close);
    closeBtn.addEventListener("click", close);

    var log = ui.log = panel.appendChild(el("div", "pvc-log"));
    log.setAttribute("role", "log");
    log.setAttribute("aria-live", "polite");
    log.setAttribute("aria-label", t.log);
    log.tabIndex = 0; // a scrollable region must be reachable by keyboard

    ui.notice = panel.appendChild(el("div", "pvc-notice"));
    ui.notice.setAttribute("role", "alert");
    ui.notice.hidden = true;

    ui.prechat = panel.appendChild(buildPrechat());
    ui.composer = panel.appendChild(buildComposer());
    ui.dropHint = panel.appendChild(el("div", "pvc-drop-hint", t.drop));
    ui.dropHint.hidden = true;
    listenForDrops(panel);
    var needPrechat = prechatWanted && !state.session && !state.profile;
    ui.prechat.hidden = !needPrechat;
    ui.composer.hidden = needPrechat;

    root.appendChild(panel);
    root.appendChild(bubble);
    document.body.appendChild(host);
    mounted = true;
    ui.root = root;
    setState("idle"); // not "offline": nothing has failed before we first try to connect

    state.queue.forEach(renderOwn);
    // A returning visitor (session or unsent messages) connects at once, so agent replies
    // and surveys arrive without opening the panel; a new visitor connects on first open.
    if (state.session || state.queue.length) connect();
    if (openWhenMounted) open();
  }

  function buildComposer() {
    var form = el("form", "pvc-composer");
    var input = ui.input = form.appendChild(el("textarea", "pvc-input"));
    input.rows = 1;
    input.maxLength = MAX_TEXT;
    input.placeholder = t.placeholder;
    input.setAttribute("aria-label", t.input);
    // The attach button shows once the server offers uploads (its welcome says so).
    var attach = ui.attach = el("button", "pvc-attach");
    attach.type = "button";
    attach.setAttribute("aria-label", t.attach);
    attach.title = t.attach;
    attach.appendChild(el("span", "pvc-attach-icon")).setAttribute("aria-hidden", "true");
    attach.hidden = true;
    var picker = ui.picker = el("input", "pvc-file-input");
    picker.type = "file";
    picker.multiple = true;
    picker.hidden = true;
    picker.tabIndex = -1;
    picker.addEventListener("change", function () {
      uploadAll(picker.files);
      picker.value = ""; // the same file chosen again is a new upload
    });
    attach.addEventListener("click", function () { picker.click(); });
    form.insertBefore(picker, input);
    form.insertBefore(attach, input);
    var send = form.appendChild(el("button", "pvc-send", t.send));
    send.type = "submit";
    input.addEventListener("keydown", function (e) {
      // Enter sends, Shift+Enter is a new line; never interrupt an IME composition.
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        submitText();
      }
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); submitText(); });
    return form;
  }

  function buildPrechat() {
    var form = el("form", "pvc-prechat");
    form.noValidate = true; // we validate ourselves so the message is in the widget's language
    form.appendChild(el("p", "pvc-prechat-intro", t.prechatIntro));
    function field(name, label, type, max) {
      var wrap = form.appendChild(el("label", "pvc-field"));
      wrap.appendChild(el("span", "pvc-label", label));
      var input = wrap.appendChild(el("input", "pvc-" + name));
      input.type = type;
      input.name = name;
      input.maxLength = max;
      input.required = true;
      input.autocomplete = name;
      return input;
    }
    ui.nameInput = field("name", t.name, "text", 100);
    ui.emailInput = field("email", t.email, "email", 254);
    var start = form.appendChild(el("button", "pvc-start", t.start));
    start.type = "submit";
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var name = ui.nameInput.value.trim(), email = ui.emailInput.value.trim();
      if (!name || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email)) {
        showNotice(t.invalid);
        (name ? ui.emailInput : ui.nameInput).focus();
        return;
      }
      hideNotice();
      state.profile = { name: name, email: email };
      saveState();
      ui.prechat.hidden = true;
      ui.composer.hidden = false;
      ui.input.focus();
      connect();
    });
    return form;
  }

  function setState(s) {
    ui.state.setAttribute("data-state", s);
    ui.state.textContent = t[s] || "";
    ui.panel.setAttribute("data-state", s);
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
    ui.notice.textContent = "";
  }

  function scrollToEnd() {
    ui.log.scrollTop = ui.log.scrollHeight;
  }

  // Server messages go above our still-unacknowledged ones: the server will order those
  // after everything it has already committed, and the log should agree with it.
  function insertServerItem(item) {
    var firstPending = ui.log.querySelector('[data-status="sending"]');
    ui.log.insertBefore(item, firstPending);
    while (ui.log.children.length > MAX_RENDERED) {
      var oldest = ui.log.querySelector(".pvc-msg:not([data-status=sending])");
      if (!oldest) break;
      ui.log.removeChild(oldest);
    }
    scrollToEnd();
  }

  function messageShell(from, text) {
    var item = el("div", "pvc-msg pvc-from-" + from);
    var who = { customer: t.you, agent: t.agent, bot: t.bot }[from];
    item.appendChild(el("span", "pvc-sr", who + ": "));
    item.appendChild(el("div", "pvc-text", text));
    return item;
  }

  function setStatus(item, status) {
    item.setAttribute("data-status", status);
    var label = item.querySelector(".pvc-status");
    if (!label) label = item.appendChild(el("span", "pvc-status"));
    label.textContent = t[status];
  }

  function renderOwn(q) {
    var item = messageShell("customer", q.text);
    item.setAttribute("data-client-id", q.id);
    setStatus(item, "sending");
    bubbles[q.id] = item;
    ui.log.appendChild(item);
    scrollToEnd();
  }

  function renderSuggestions(list) {
    var links = [];
    for (var i = 0; i < list.length && links.length < MAX_LINKS; i++) {
      var s = list[i];
      var href = s && safeHttpUrl(s.url);
      var title = s && str(s.title, 300);
      if (href && title) links.push({ href: href, title: title });
    }
    if (!links.length) return null;
    var box = el("div", "pvc-suggestions");
    box.appendChild(el("p", "pvc-suggestions-title", t.help));
    var ul = box.appendChild(el("ul"));
    links.forEach(function (l) {
      var a = ul.appendChild(el("li")).appendChild(el("a", "pvc-link", l.title));
      a.href = l.href;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    });
    return box;
  }

  function renderChoices(question, list) {
    var group = el("div", "pvc-choices");
    group.setAttribute("role", "group");
    var buttons = [];
    var answered = state.answered.hasOwnProperty(question) ? state.answered[question] : undefined;
    for (var i = 0; i < list.length && buttons.length < MAX_CHOICES; i++) {
      var c = list[i];
      var label = c && str(c.label, 200);
      if (!label || !c || c.value === undefined || c.value === null || typeof c.value === "object") continue;
      var b = group.appendChild(el("button", "pvc-choice", label));
      b.type = "button";
      b.setAttribute("aria-pressed", String(answered !== undefined && answered === c.value));
      b.disabled = answered !== undefined;
      b.addEventListener("click", onChoice.bind(null, question, c.value, label, b, buttons));
      buttons.push(b);
    }
    return buttons.length ? group : null;
  }

  function onChoice(question, value, label, button, buttons) {
    // One answer per question: disable the whole group at once, so a double click
    // cannot send two answers.
    buttons.forEach(function (b) { b.disabled = true; });
    button.setAttribute("aria-pressed", "true");
    state.answered[question] = value;
    if (!enqueue({ id: uuid(), kind: "choice", question: question, value: value, text: label })) {
      delete state.answered[question];
      buttons.forEach(function (b) { b.disabled = false; });
      button.setAttribute("aria-pressed", "false");
    }
  }

  function renderServerMessage(f) {
    var key = String(f.message_id);
    if (seen[key]) return;
    var from = f.from === "customer" || f.from === "bot" ? f.from : "agent";
    // If the server echoes our own message with its client id, that echo is the ack.
    if (from === "customer" && typeof f.id === "string" && bubbles[f.id]) {
      onAck({ id: f.id, message_id: f.message_id });
      return;
    }
    seen[key] = true;
    var item = messageShell(from, str(f.text, 20000));
    item.setAttribute("data-message-id", key);
    if (Array.isArray(f.suggestions)) {
      var sug = renderSuggestions(f.suggestions);
      if (sug) item.appendChild(sug);
    }
    if (Array.isArray(f.choices) && isId(f.question)) {
      var ch = renderChoices(String(f.question), f.choices);
      if (ch) item.appendChild(ch);
    }
    if (Array.isArray(f.attachments)) {
      var files = renderAttachments(f.attachments);
      if (files) item.appendChild(files);
    }
    insertServerItem(item);
    if (from !== "customer" && isNewerThanStored(f.message_id) && ui.panel.hidden) {
      unread++;
      ui.badge.textContent = String(unread);
      ui.badge.hidden = false;
      ui.bubble.setAttribute("aria-label", t.open + " (" + unread + t.unread + ")");
    }
  }

  function isNewerThanStored(id) {
    if (unreadAfter === null) return true;
    if (typeof id === "number" && typeof unreadAfter === "number") return id > unreadAfter;
    return String(id) !== String(unreadAfter);
  }

  // ---- sending ---------------------------------------------------------------------------

  function submitText() {
    var text = ui.input.value.trim();
    if (!text) return;
    if (text.length > MAX_TEXT) { showNotice(t.too_large); return; }
    if (enqueue({ id: uuid(), kind: "message", text: text })) ui.input.value = "";
    ui.input.focus();
  }

  function enqueue(q) {
    if (state.queue.length >= MAX_QUEUE) { showNotice(t.queueFull); return false; }
    // Persist before sending: a reload or a crash right after the click must not lose it.
    state.queue.push(q);
    saveState();
    renderOwn(q);
    if (!ws && !reconnectTimer) connect(); // first message of a new visitor
    flush();
    return true;
  }

  function frameFor(q) {
    return q.kind === "choice"
      ? { type: "choice", id: q.id, question: q.question, value: q.value }
      : { type: "message", id: q.id, text: q.text };
  }

  // Sends every queued item not already sent on this connection. Re-sending after a
  // reconnect reuses the same client id, so the server stores each message once.
  function flush() {
    if (!ws || !welcomed || ws.readyState !== 1 || rateTimer) return;
    state.queue.forEach(function (q) {
      if (inflight[q.id]) return;
      inflight[q.id] = true;
      ws.send(JSON.stringify(frameFor(q)));
    });
  }

  function onAck(f) {
    if (typeof f.id !== "string" || !isId(f.message_id)) return;
    state.queue = state.queue.filter(function (q) { return q.id !== f.id; });
    saveState();
    delete inflight[f.id];
    rateAttempt = 0;
    if (isId(f["case"])) showCase(f["case"]);
    var item = bubbles[f.id];
    if (!item) return;
    delete bubbles[f.id];
    var key = String(f.message_id);
    if (seen[key]) {
      // The history replay already showed this message (its ack was lost in a disconnect);
      // keep one copy.
      item.parentNode.removeChild(item);
      return;
    }
    seen[key] = true;
    item.setAttribute("data-message-id", key);
    setStatus(item, "sent");
    hideNotice();
  }

  // ---- files -----------------------------------------------------------------------------

  var uploadOffer = null; // { maxBytes } once the server's welcome offers uploads

  function listenForDrops(panel) {
    var depth = 0; // dragenter/dragleave fire for every child crossed
    function carriesFiles(e) {
      var types = e.dataTransfer && e.dataTransfer.types;
      return !!uploadOffer && !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
    }
    panel.addEventListener("dragenter", function (e) {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      depth++;
      ui.dropHint.hidden = false;
      panel.classList.add("pvc-dropping");
    });
    panel.addEventListener("dragover", function (e) {
      if (!carriesFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    });
    panel.addEventListener("dragleave", function () {
      depth = Math.max(0, depth - 1);
      if (!depth) endDrop();
    });
    panel.addEventListener("drop", function (e) {
      if (!carriesFiles(e)) return;
      e.preventDefault(); // or the browser opens the file in place of the shop's page
      depth = 0;
      endDrop();
      uploadAll(e.dataTransfer.files);
    });
    function endDrop() {
      ui.dropHint.hidden = true;
      panel.classList.remove("pvc-dropping");
    }
  }

  function uploadAll(fileList) {
    if (!fileList) return;
    for (var i = 0; i < fileList.length && i < MAX_FILES_AT_ONCE; i++) uploadFile(fileList[i]);
  }

  function uploadFile(file) {
    if (!uploadOffer || !state.session) return;
    if (file.size > uploadOffer.maxBytes) { showNotice(t.fileTooLarge + sizeLabel(uploadOffer.maxBytes) + "."); return; }
    if (!file.size) { showNotice(t.fileEmpty); return; }
    var id = uuid();
    var name = String(file.name || "file").slice(0, 255);
    var item = messageShell("customer", "\ud83d\udcce " + name);
    item.setAttribute("data-client-id", id);
    item.setAttribute("data-upload", "true");
    var progress = item.appendChild(el("progress", "pvc-progress"));
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", t.uploading + " " + name);
    setStatus(item, "sending");
    item.querySelector(".pvc-status").textContent = t.uploading;
    ui.log.appendChild(item);
    scrollToEnd();

    var xhr = new XMLHttpRequest();
    xhr.open("POST", filesUrl + "?id=" + encodeURIComponent(id) + "&name=" + encodeURIComponent(name));
    xhr.setRequestHeader("Authorization", "Bearer " + state.session);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable && e.total) progress.value = Math.round(100 * e.loaded / e.total);
    };
    xhr.onload = function () {
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
      if (xhr.status === 201 && body && body.type === "ack" && isId(body.message_id)) {
        uploaded(item, progress, body, file);
      } else {
        uploadFailed(item, progress, body && str(body.message, 300));
      }
    };
    xhr.onerror = xhr.onabort = function () { uploadFailed(item, progress, null); };
    xhr.send(file);
  }

  function uploaded(item, progress, body, file) {
    progress.parentNode.removeChild(progress);
    if (isId(body["case"])) showCase(body["case"]);
    var key = String(body.message_id);
    if (seen[key]) { item.parentNode.removeChild(item); return; } // a replay showed it already
    seen[key] = true;
    item.setAttribute("data-message-id", key);
    setStatus(item, "sent");
    var files = renderAttachments(Array.isArray(body.attachments) ? body.attachments : [], file);
    if (files) item.insertBefore(files, item.querySelector(".pvc-status"));
    hideNotice();
  }

  function uploadFailed(item, progress, message) {
    if (progress.parentNode) progress.parentNode.removeChild(progress);
    setStatus(item, "failed");
    var why = message || t.fileFailed;
    item.appendChild(el("span", "pvc-file-error", why));
    showNotice(why);
  }

  // A message's files: a thumbnail for an image a browser shows, else a link to save it.
  // Reading a file back needs the session token (a header), so each is fetched as a blob;
  // ``local`` is the visitor's own just-uploaded File, shown without a round trip.
  function renderAttachments(list, local) {
    var box = el("div", "pvc-files");
    for (var i = 0; i < list.length && i < MAX_ATTACHMENTS; i++) {
      var a = list[i];
      if (!a || !isId(a.id)) continue;
      var name = str(a.filename, 255) || "file";
      var type = str(a.content_type, 200);
      var wrap = box.appendChild(el("div", "pvc-file"));
      wrap.setAttribute("data-attachment-id", String(a.id));
      if (PREVIEW_TYPES.hasOwnProperty(type)) {
        var img = wrap.appendChild(el("img", "pvc-thumb"));
        img.alt = name;
        if (local && list.length === 1) img.src = URL.createObjectURL(local);
        else fetchFile(a.id, function (blob) { img.src = URL.createObjectURL(blob); });
      }
      var link = wrap.appendChild(el("a", "pvc-file-link", name));
      link.href = "#";
      link.setAttribute("aria-label", t.download + name);
      link.addEventListener("click", saveFile.bind(null, a.id, name));
      if (typeof a.size === "number") wrap.appendChild(el("span", "pvc-file-size", sizeLabel(a.size)));
    }
    return box.children.length ? box : null;
  }

  function fetchFile(id, done) {
    if (!state.session) return;
    var xhr = new XMLHttpRequest();
    xhr.open("GET", filesUrl + "/" + encodeURIComponent(String(id)));
    xhr.responseType = "blob";
    xhr.setRequestHeader("Authorization", "Bearer " + state.session);
    xhr.onload = function () { if (xhr.status === 200) done(xhr.response); };
    xhr.send();
  }

  function saveFile(id, name, e) {
    e.preventDefault();
    fetchFile(id, function (blob) {
      var a = el("a");
      a.href = URL.createObjectURL(blob);
      a.download = name;
      ui.shadow.appendChild(a);
      a.click();
      ui.shadow.removeChild(a);
      setTimeout(function () { URL.revokeObjectURL(a.href); }, 60000);
    });
  }

  function showCase(n) {
    ui.caseNo.textContent = t.caseLabel + String(n).slice(0, 32);
  }

  // ---- connection ------------------------------------------------------------------------

  var ws = null;
  var welcomed = false;
  var helloHadSession = false;
  var inflight = {}; // client id -> true, per connection; answers come back in send order
  var attempt = 0;
  var reconnectTimer = null;
  var rateTimer = null;
  var rateAttempt = 0;

  function backoff(n) {
    var ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * Math.pow(2, n));
    // "Equal jitter": never instant, yet a crowd of widgets spreads out after a restart.
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  function connect() {
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; }
    if (ws) return;
    setState("connecting");
    var sock;
    try {
      sock = new WebSocket(wsUrl);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    welcomed = false;
    inflight = {};
    sock.onopen = function () { if (ws === sock) sayHello(); };
    sock.onmessage = function (ev) { if (ws === sock) onFrame(ev.data); };
    sock.onclose = function () {
      if (ws !== sock) return;
      ws = null;
      welcomed = false;
      inflight = {};
      setState("offline");
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    var delay = backoff(attempt);
    attempt = Math.min(attempt + 1, 20);
    reconnectTimer = setTimeout(function () { reconnectTimer = null; connect(); }, delay);
  }

  function sayHello() {
    var hello = { type: "hello", session: state.session, last_seen: pageLastSeen, lang: lang };
    // The visitor's time zone: "we open Monday at 09:00" is then said in their time.
    try { var tz = Intl.DateTimeFormat().resolvedOptions().timeZone; if (tz) hello.tz = tz; } catch (_) { /* old browser */ }
    if (state.profile) { hello.name = state.profile.name; hello.email = state.profile.email; }
    helloHadSession = state.session !== null;
    ws.send(JSON.stringify(hello));
  }

  function onFrame(data) {
    if (typeof data !== "string" || data.length > MAX_FRAME_CHARS) return;
    var f;
    try { f = JSON.parse(data); } catch (e) { return; }
    if (!f || typeof f !== "object") return;
    if (f.type === "welcome") onWelcome(f);
    else if (f.type === "ack") onAck(f);
    else if (f.type === "message" && isId(f.message_id)) {
      renderServerMessage(f);
      // The server replays "id > last_seen", so never move it backwards if frames arrive
      // out of order (a live push racing the replay).
      if (!(typeof pageLastSeen === "number" && typeof f.message_id === "number" && f.message_id < pageLastSeen)) {
        pageLastSeen = f.message_id;
        state.lastSeen = f.message_id;
        saveState();
      }
    } else if (f.type === "error") onError(f);
  }

  function onWelcome(f) {
    if (typeof f.session !== "string" || !f.session || f.session.length > 512) return;
    var offer = f.upload;
    uploadOffer = offer && typeof offer === "object" && typeof offer.max_bytes === "number" && offer.max_bytes > 0
      ? { maxBytes: offer.max_bytes } : null;
    ui.attach.hidden = !uploadOffer;
    state.session = f.session;
    saveState();
    welcomed = true;
    attempt = 0; // reset only once the server really talks to us, not on a bare TCP accept
    setState("online");
    if (isId(f["case"])) showCase(f["case"]);
    flush();
  }

  function onError(f) {
    var code = f.code;
    if (code === "unauthorized") {
      showNotice(t.unauthorized);
      if (!helloHadSession) { if (ws) ws.close(); return; } // a null session refused: back off
      resetSession();
      if (ws && ws.readyState === 1) sayHello();
      return;
    }
    // Answers come back in the order frames were sent, so an error without an id belongs to
    // the oldest frame still waiting for its ack.
    var target = null;
    state.queue.forEach(function (q) {
      if (!target && inflight[q.id] && (typeof f.id !== "string" || f.id === q.id)) target = q;
    });
    if (code === "file_refused") {
      // An upload refused; its own HTTP answer says the same and marks its bubble.
      showNotice(str(f.message, 300) || t.fileFailed);
      return;
    }
    if (code === "rate_limited") {
      showNotice(t.rate_limited);
      if (target) delete inflight[target.id];
      if (!rateTimer) {
        rateTimer = setTimeout(function () { rateTimer = null; flush(); }, backoff(rateAttempt));
        rateAttempt = Math.min(rateAttempt + 1, 20);
      }
    } else if (code === "too_large" || code === "bad_request") {
      showNotice(t[code]);
      // The same frame would be refused again: stop retrying it and say so on the bubble.
      if (!target) return;
      state.queue = state.queue.filter(function (q) { return q !== target; });
      saveState();
      delete inflight[target.id];
      var item = bubbles[target.id];
      delete bubbles[target.id];
      if (item) setStatus(item, "failed");
      if (target.kind === "choice") delete state.answered[target.question];
    }
  }

  // The old session is gone (expired or revoked). Its history is no longer ours to show;
  // unsent messages stay queued and go to the new session.
  function resetSession() {
    state.session = null;
    state.lastSeen = null;
    pageLastSeen = null;
    unreadAfter = null;
    seen = {};
    welcomed = false;
    inflight = {};
    saveState();
    Array.prototype.slice.call(ui.log.children).forEach(function (n) {
      if (n.getAttribute("data-status") !== "sending") ui.log.removeChild(n);
    });
    ui.caseNo.textContent = "";
  }

  // ---- open / close ----------------------------------------------------------------------

  function open() {
    if (!mounted) { openWhenMounted = true; return; }
    ui.panel.hidden = false;
    ui.root.classList.add("pvc-open");
    ui.bubble.setAttribute("aria-expanded", "true");
    ui.bubble.setAttribute("aria-label", t.close);
    unread = 0;
    ui.badge.hidden = true;
    if (!ws && !reconnectTimer && ui.prechat.hidden) connect();
    (ui.prechat.hidden ? ui.input : ui.nameInput).focus();
    scrollToEnd();
  }

  function close() {
    if (!mounted) { openWhenMounted = false; return; }
    ui.panel.hidden = true;
    ui.root.classList.remove("pvc-open");
    ui.bubble.setAttribute("aria-expanded", "false");
    ui.bubble.setAttribute("aria-label", t.open);
    // Focus returns to what opened the panel, but only if it was in the panel: a host
    // page calling PosventaChat.close() must not have its own focus stolen.
    var active = ui.shadow.activeElement;
    if (active && ui.panel.contains(active)) ui.bubble.focus();
  }

  // Coming back online should not wait for the rest of a long backoff.
  window.addEventListener("online", function () { if (!ws && reconnectTimer) connect(); });

  window.PosventaChat = Object.freeze({ open: open, close: close, lang: lang });

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
