// posventa console: small progressive enhancements. Every page works without this file.
// No inline scripts (the CSP forbids them); HTML fragments come from our own server,
// rendered by the same autoescaping templates as the full pages.
"use strict";

(function () {
  // The words this script writes, in the reader's language: the server renders them on
  // every page (SCRIPT_TEXTS in i18n.py, translated in the .po files).
  let texts = null;
  function t(key, params) {
    if (!texts) {
      const block = document.getElementById("console-texts");
      try { texts = block ? JSON.parse(block.textContent) : {}; } catch (_) { texts = {}; }
    }
    let text = texts[key] === undefined ? key : String(texts[key]);
    Object.keys(params || {}).forEach(function (name) { text = text.split("%(" + name + ")s").join(String(params[name])); });
    return text;
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  async function fetchFragment(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
    if (!response.ok || response.redirected) throw new Error(String(response.status));
    return response.text();
  }

  // One event stream per page (every console page opens it: the agent's presence and
  // their browser notifications); the inbox and case pages listen to it too.
  let sharedSource = null;
  function liveSource(url) {
    if (!sharedSource) {
      // A case page's stream is also this tab's presence on the case (who else has it open).
      const kase = document.querySelector(".case[data-presence]");
      if (kase) url += (url.indexOf("?") < 0 ? "?" : "&") + "case=" + Number(kase.dataset.case) + "&tab=" + pageTab();
      sharedSource = new EventSource(url);
      window.addEventListener("pagehide", function () { sharedSource.close(); });
    }
    return sharedSource;
  }

  // This tab's id for the case's presence: random, made up here (the server only
  // bounds and checks its shape).
  let tab = null;
  function pageTab() {
    if (!tab) {
      const bytes = new Uint8Array(12);
      window.crypto.getRandomValues(bytes);
      tab = Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    }
    return tab;
  }

  // Live updates: the server pushes "case N got message M"; we fetch the fresh fragment.
  function startLive(root, onEvent, onOpen, onPresence) {
    if (!window.EventSource) return;
    const status = root.querySelector(".live-status");
    const source = liveSource(document.body.dataset.events || root.dataset.live);
    source.addEventListener("open", function () {
      if (status) { status.textContent = t("live"); status.classList.add("on"); }
      // What changed between rendering the page (or losing the stream) and now was told
      // to nobody: catch up once.
      if (onOpen) onOpen();
    });
    source.addEventListener("error", function () {
      if (status) { status.textContent = t("reconnecting"); status.classList.remove("on"); }
    });
    source.addEventListener("message", function (e) {
      let data;
      try { data = JSON.parse(e.data); } catch (_) { return; }
      onEvent(data);
    });
    // Who else is on this case changed: the page fetches the list (names stay server-rendered).
    if (onPresence) source.addEventListener("presence", function () { onPresence(); });
  }

  // Browser notifications (the Notification API): permission is asked once, from a
  // click on "Allow browser notifications" (browsers refuse a request without a
  // gesture); then each notification the server sends this agent shows while a console
  // page is open. The tag makes several open tabs show one notification, not one each.
  function browserNotifications() {
    const body = document.body;
    if (!body.dataset.events || !window.EventSource || !("Notification" in window)) return;
    const buttons = document.querySelectorAll("[data-ask-notifications]");
    function showButtons() {
      buttons.forEach(function (b) { b.hidden = Notification.permission !== "default"; });
    }
    buttons.forEach(function (button) {
      button.addEventListener("click", function () {
        Promise.resolve(Notification.requestPermission()).then(showButtons, showButtons);
      });
    });
    showButtons();
    liveSource(body.dataset.events).addEventListener("notify", function (e) {
      if (Notification.permission !== "granted") return;
      let data;
      try { data = JSON.parse(e.data); } catch (_) { return; }
      const number = Number(data.case);
      const shown = new Notification(body.dataset.company || "posventa", {
        body: String(data.text || ""), tag: "posventa-" + String(data.notify) + "-" + number,
      });
      shown.addEventListener("click", function () {
        window.focus();
        window.location.href = body.dataset.cases + number;
        shown.close();
      });
    });
  }

  function liveInbox(root) {
    const target = document.getElementById("inbox-results");
    const fresh = new Set();
    const refresh = debounce(async function () {
      try {
        target.innerHTML = await fetchFragment(root.dataset.refresh);
        fresh.forEach(function (n) {
          const row = target.querySelector('tr[data-case="' + Number(n) + '"]');
          if (row) row.classList.add("fresh");
        });
        fresh.clear();
      } catch (_) { /* the next event or a reload will catch up */ }
    }, 250);
    startLive(root, function (event) {
      if (event.delivery) return;  // a reply's delivery state: only its case page shows it
      fresh.add(event.case); refresh();
    });
  }

  // SLA countdowns: the server renders "in 1h 20m" (ConsoleLocales.countdown); this keeps
  // them ticking between refreshes, in the same words (a row turns red once the due time passes).
  function countdowns() {
    function render(minutes) {
      const m = Math.abs(minutes), d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60), r = m % 60;
      const span = t(d ? "span_days" : h ? "span_hours" : "span_minutes", { days: d, hours: h, minutes: r });
      return t(minutes >= 0 ? "in" : "overdue", { span: span });
    }
    function tick() {
      document.querySelectorAll("time[data-countdown]").forEach(function (el) {
        const due = Date.parse(el.getAttribute("datetime"));
        if (isNaN(due)) return;
        const minutes = Math.floor((due - Date.now()) / 60000);
        el.textContent = render(minutes);
        if (minutes < 0 && el.parentElement) {
          el.parentElement.classList.remove("due-ok", "due-warning");
          el.parentElement.classList.add("due-breached");
        }
      });
    }
    setInterval(tick, 30000);
  }

  // Typing: reported when keys are pressed (at most every few seconds), "idle" after a
  // pause; the server ends "typing" by itself if a report is lost.
  const TYPING_REPORT_MS = 3000, IDLE_AFTER_MS = 4000;

  function liveCase(root) {
    const target = document.getElementById("thread");
    if (!target) return;
    const number = Number(root.dataset.case);
    const refresh = debounce(async function () {
      try { target.innerHTML = await fetchFragment(root.dataset.thread); } catch (_) { /* ignore */ }
    }, 150);
    const presence = document.getElementById("presence");
    const refreshPresence = debounce(async function () {
      try { presence.innerHTML = await fetchFragment(root.dataset.presence); } catch (_) { /* the next event */ }
    }, 100);
    function report(state) {
      const body = new FormData();
      body.append("_csrf", csrfToken());
      body.append("tab", pageTab());
      body.append("state", state);
      if (state === "left" && navigator.sendBeacon) { navigator.sendBeacon(root.dataset.presence, body); return; }
      fetch(root.dataset.presence, { method: "POST", body: body, credentials: "same-origin", keepalive: true,
                                     headers: { "X-CSRF-Token": csrfToken() } }).catch(function () { /* best effort */ });
    }
    const box = document.getElementById("reply-text");
    if (box) {
      let reported = 0, idle = null;
      box.addEventListener("input", function () {
        const now = Date.now();
        if (now - reported >= TYPING_REPORT_MS) { reported = now; report("typing"); }
        clearTimeout(idle);
        idle = setTimeout(function () { reported = 0; report("idle"); }, IDLE_AFTER_MS);
      });
    }
    // Closing the tab says so at once (the server would notice the dead stream later).
    window.addEventListener("pagehide", function () { report("left"); });
    startLive(root, function (event) { if (Number(event.case) === number) refresh(); },
              function () { refresh(); refreshPresence(); }, refreshPresence);
  }

  // The KB tab's Markdown editors (EasyMDE, vendored), keyed by their textarea's id.
  const editors = {};

  function csrfToken() {
    const field = document.querySelector("input[name=_csrf]");
    return field ? field.value : "";
  }

  // Pasted, dropped or chosen images go to the server, which stores them like attachments
  // and answers with the URL the Markdown refers to.
  function uploadImage(url) {
    return function (file, onSuccess, onError) {
      const body = new FormData();
      body.append("image", file, file.name || "image");
      fetch(url, { method: "POST", body: body, credentials: "same-origin",
                   headers: { "X-CSRF-Token": csrfToken(), "Accept": "application/json" } })
        .then(function (r) { return r.json().then(function (data) { return [r.ok, data]; }); })
        .then(function (pair) { if (pair[0]) onSuccess(pair[1].url); else onError(pair[1].message); })
        .catch(function () { onError(t("image_upload_failed")); });
    };
  }

  // The preview is the server's sanitised rendering: the same HTML the page shows.
  function serverPreview(url) {
    return function (text, preview) {
      fetch(url, { method: "POST", body: text, credentials: "same-origin",
                   headers: { "X-CSRF-Token": csrfToken(), "Content-Type": "text/plain; charset=utf-8" } })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) { preview.innerHTML = html; })
        .catch(function () { /* keep the last preview */ });
      return preview.innerHTML || "…";
    };
  }

  function markdownEditors() {
    if (!window.EasyMDE) return;
    document.querySelectorAll("textarea[data-markdown-editor]").forEach(function (area) {
      const text = function (name, title) { return { name: name, title: title, text: title }; };
      const editor = new window.EasyMDE({
        element: area, forceSync: true, spellChecker: false, autoDownloadFontAwesome: false,
        status: ["upload-image"], minHeight: "8em", uploadImage: true,
        imageUploadFunction: uploadImage(area.dataset.imageUpload),
        imageAccept: "image/png, image/jpeg, image/gif, image/webp",
        imageTexts: { sbInit: t("image_status"), sbOnDragEnter: t("image_drag"), sbOnDrop: t("image_dropped"),
                      sbProgress: t("image_progress"), sbOnUploaded: t("image_uploaded"), sizeUnits: t("size_units") },
        errorMessages: { noFileGiven: t("image_no_file"), typeNotAllowed: t("image_type"),
                         fileTooLarge: t("image_too_big"), importError: t("image_import_error") },
        previewRender: serverPreview(area.dataset.preview),
        toolbar: [
          { name: "bold", action: window.EasyMDE.toggleBold, title: t("bold"), text: "B" },
          { name: "italic", action: window.EasyMDE.toggleItalic, title: t("italic"), text: "I" },
          { name: "unordered-list", action: window.EasyMDE.toggleUnorderedList, title: t("list"),
            text: t("list_button") },
          { name: "ordered-list", action: window.EasyMDE.toggleOrderedList, title: t("numbered_list"),
            text: t("numbered_list_button") },
          { name: "link", action: window.EasyMDE.drawLink, title: t("link"), text: t("link") },
          { name: "upload-image", action: window.EasyMDE.drawUploadedImage, title: t("image"), text: t("image") },
          "|",
          { name: "preview", action: window.EasyMDE.togglePreview, title: t("preview"), text: t("preview"),
            noDisable: true },
        ].map(function (b) { return typeof b === "string" ? b : Object.assign(text(b.name, b.title), b); }),
      });
      editors[area.id] = editor;
      // The editor's box (toolbar and text) sits beside the hidden textarea: name it after it.
      editor.codemirror.getWrapperElement().parentNode.id = area.id + "-editor";
      area.closest("form").addEventListener("submit", function () { area.value = editor.value(); });
    });
    window.posventaEditors = editors;
  }

  function copyDescription() {
    const button = document.getElementById("copy-description");
    if (!button) return;
    button.addEventListener("click", function (e) {
      const from = document.getElementById(button.dataset.copyFrom);
      const to = document.getElementById(button.dataset.copyTo);
      if (!from || !to) return;  // fall back to the server-side copy
      e.preventDefault();
      to.value = from.value;
      const editor = editors[to.id];
      if (editor) { editor.value(from.value); editor.codemirror.focus(); } else { to.focus(); }
    });
  }

  function subcategories() {
    const parent = document.querySelector("select[data-parent-of]");
    if (!parent) return;
    const child = document.getElementById(parent.dataset.parentOf);
    function sync() {
      child.querySelectorAll("optgroup").forEach(function (group) {
        group.hidden = !!parent.value && group.dataset.parent !== parent.value;
      });
      const chosen = child.selectedOptions[0];
      if (chosen && chosen.dataset.parent && chosen.dataset.parent !== parent.value) child.value = "";
    }
    parent.addEventListener("change", sync);
    sync();
  }

  function budgetMode() {
    const select = document.querySelector("select[data-budget-mode]");
    if (!select) return;
    const table = document.querySelector("table.budget");
    const note = document.getElementById("budget-not-used");
    select.addEventListener("change", function () {
      // An empty choice follows the process's mode.
      const mode = select.value || select.dataset.processMode;
      table.className = ["budget", "mode-" + mode].join(" ");
      table.hidden = mode === "not_used";
      if (note) note.hidden = mode !== "not_used";
    });
  }

  function confirmations() {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (e) {
        if (!window.confirm(form.dataset.confirm)) e.preventDefault();
      });
    });
  }

  // Canned responses: the picker puts the macro's text (rendered for this case by the
  // server) in the reply box; "/name" at the start of the box searches the names.
  function macroPicker() {
    const picker = document.getElementById("macro-picker");
    const box = document.getElementById("reply-text");
    const list = document.getElementById("macro-suggestions");
    if (!picker || !box || !list) return;
    const options = Array.from(picker.options).filter(function (o) { return o.value && !o.disabled; });
    function pick(option) {
      picker.value = option.value;
      box.value = option.dataset.text;
      list.hidden = true;
      box.focus();
    }
    picker.addEventListener("change", function () {
      const option = picker.selectedOptions[0];
      if (option && option.value) pick(option);
    });
    function matches() {
      const typed = box.value.match(/^\/([^\n]*)$/);
      if (!typed) return null;
      const wanted = typed[1].trim().toLowerCase();
      return options.filter(function (o) { return o.dataset.name.toLowerCase().indexOf(wanted) !== -1; }).slice(0, 8);
    }
    box.addEventListener("input", function () {
      const found = matches();
      list.replaceChildren();
      if (!found) { list.hidden = true; return; }
      if (picker.value && !box.value.startsWith("/")) picker.value = "";
      found.forEach(function (option) {
        const item = document.createElement("li");
        item.setAttribute("role", "option");
        item.dataset.macro = option.value;
        item.textContent = option.dataset.name;  // text, never HTML
        item.addEventListener("mousedown", function (e) { e.preventDefault(); pick(option); });
        list.appendChild(item);
      });
      list.hidden = found.length === 0;
    });
    box.addEventListener("keydown", function (e) {
      if (e.key !== "Enter" || list.hidden) return;
      const found = matches();
      if (found && found.length) { e.preventDefault(); pick(found[0]); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    browserNotifications();
    const inbox = document.querySelector(".inbox[data-live]");
    if (inbox) liveInbox(inbox);
    const kase = document.querySelector(".case[data-live]");
    if (kase) liveCase(kase);
    markdownEditors();
    copyDescription();
    countdowns();
    subcategories();
    budgetMode();
    confirmations();
    macroPicker();
  });
})();
