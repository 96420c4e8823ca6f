// The chat: the visitor's own client key (sessionStorage), models from /v1/models,
// answers streamed from /v1/chat/completions and rendered as sanitised Markdown.
// Conversations live in this browser's localStorage; the key never does.
import { download, parseConversation } from "./chat_files.js";
import { clientKey, copyText, el, errorFrom, icon, toast } from "./common.js";

const STORE = "vgw.chat.conversations";
const CURRENT = "vgw.chat.current";
const MAX_CONVERSATIONS = 50;
const KEY_CODES = new Set(["invalid_api_key", "key_revoked", "key_expired"]);

const $ = (id) => document.getElementById(id);
const messagesBox = $("messages");
const scroller = $("messages-scroll");
const prompt = $("prompt");
const sendButton = $("send");
const stopButton = $("stop");
const modelSelect = $("model");
const keyPanel = $("key-panel");
const emptyState = $("empty-state");
const systemPrompt = $("system-prompt");
const temperature = $("temperature");
const maxTokens = $("max-tokens");
const topP = $("top-p");
const seed = $("seed");
const stopSequences = $("stop-sequences");
const conversationSearch = $("conversation-search");

let conversations = loadConversations();
let current = null;
let models = [];
let controller = null; // the AbortController of the answer being streamed

// --- storage --------------------------------------------------------------------

function loadConversations() {
  try {
    const stored = JSON.parse(window.localStorage.getItem(STORE) || "[]");
    return Array.isArray(stored) ? stored.filter((item) => item && Array.isArray(item.messages)) : [];
  } catch {
    return [];
  }
}

function save() {
  const kept = conversations
    .filter((item) => item.messages.length > 0)
    .sort((a, b) => b.updated - a.updated)
    .slice(0, MAX_CONVERSATIONS);
  try {
    window.localStorage.setItem(STORE, JSON.stringify(kept));
    if (current) window.localStorage.setItem(CURRENT, current.id);
  } catch {
    toast("This browser refused to store the conversation.", "warning");
  }
  renderConversationList();
}

function newConversation() {
  const conversation = {
    id: crypto.randomUUID(),
    title: "New chat",
    created: Date.now(),
    updated: Date.now(),
    model: modelSelect.value || "",
    system: current?.system ?? "",
    temperature: current?.temperature ?? 0.7,
    maxTokens: current?.maxTokens ?? null,
    topP: current?.topP ?? null,
    seed: current?.seed ?? null,
    stop: current?.stop ?? [],
    messages: [],
  };
  conversations.unshift(conversation);
  return conversation;
}

// --- conversation list ----------------------------------------------------------

function matches(conversation, query) {
  if (!query) return true;
  const needle = query.toLowerCase();
  return (
    conversation.title.toLowerCase().includes(needle) ||
    conversation.messages.some((message) => (message.content || "").toLowerCase().includes(needle))
  );
}

function listButton(label, iconName, onClick) {
  return el(
    "button",
    {
      type: "button",
      class: "btn btn-ghost btn-sm shrink-0 px-2 text-slate-500 dark:text-slate-400",
      title: label,
      "aria-label": label,
      onclick: onClick,
    },
    icon(iconName),
  );
}

function renderConversationList() {
  const list = $("conversations");
  const query = conversationSearch.value.trim();
  const shown = conversations.filter(
    (item) => (item.messages.length > 0 || item === current) && matches(item, query),
  );
  if (!shown.length && query) {
    list.replaceChildren(el("li", { class: "px-3 py-2 text-sm text-slate-600 dark:text-slate-400" }, "No conversation matches."));
    return;
  }
  list.replaceChildren(
    ...shown.map((item) => {
      const active = item === current;
      return el(
        "li",
        { class: "flex items-center gap-0.5", dataset: { conversation: item.id } },
        el(
          "button",
          {
            type: "button",
            class: `min-w-0 flex-1 truncate rounded-lg px-3 py-2 text-left text-sm ${
              active
                ? "bg-slate-100 font-medium text-slate-900 dark:bg-slate-800 dark:text-white"
                : "text-slate-600 hover:bg-slate-50 dark:text-slate-400 dark:hover:bg-slate-800/60"
            }`,
            onclick: () => selectConversation(item),
            "aria-current": active ? "true" : null,
            "data-testid": "conversation-title",
          },
          item.title,
        ),
        listButton(`Rename conversation ${item.title}`, "fa-pen", (event) => renameConversation(item, event.currentTarget.closest("li"))),
        listButton(`Delete conversation ${item.title}`, "fa-trash-can", () => deleteConversation(item)),
      );
    }),
  );
}

function renameConversation(conversation, row) {
  const input = el("input", {
    class: "input min-w-0 flex-1 py-1.5 text-sm",
    value: conversation.title,
    "aria-label": "New name of the conversation",
    maxlength: "120",
  });
  let done = false;
  const finish = (keep) => {
    if (done) return;
    done = true;
    const title = input.value.trim();
    if (keep && title) {
      conversation.title = title;
      conversation.updated = Date.now();
    }
    save();
  };
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  row.replaceChildren(input);
  input.focus();
  input.select();
}

function selectConversation(conversation) {
  if (controller) controller.abort();
  current = conversation;
  systemPrompt.value = conversation.system || "";
  temperature.value = String(conversation.temperature ?? 0.7);
  maxTokens.value = conversation.maxTokens ?? "";
  topP.value = conversation.topP ?? "";
  seed.value = conversation.seed ?? "";
  stopSequences.value = (conversation.stop || []).join("\n");
  updateTemperatureLabel();
  if (conversation.model && models.includes(conversation.model)) modelSelect.value = conversation.model;
  renderMessages();
  renderConversationList();
  closeSidebar();
}

function deleteConversation(conversation) {
  const index = conversations.indexOf(conversation);
  conversations = conversations.filter((item) => item !== conversation);
  const wasCurrent = conversation === current;
  if (wasCurrent) selectConversation(conversations.find((item) => item.messages.length) || newConversation());
  save();
  toast(`Deleted “${conversation.title}”.`, "info", {
    label: "Undo",
    run: () => {
      conversations.splice(Math.max(0, index), 0, conversation);
      if (wasCurrent) selectConversation(conversation);
      save();
    },
  });
}

// --- messages ---------------------------------------------------------------------

function escapeHtml(text) {
  return text
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

// HTML written by the model is shown as text, and Markdown images become links, so an
// answer can neither run anything nor load anything from elsewhere. DOMPurify still
// sanitises the rendered result, as a second line.
window.marked.use({
  renderer: {
    html: ({ text }) => escapeHtml(text),
    image: ({ href, text }) =>
      `<a href="${escapeHtml(href || "")}">${escapeHtml(text || href || "image")}</a>`,
  },
});

function renderMarkdown(target, text, final) {
  const html = window.marked.parse(text, { gfm: true, breaks: true, async: false });
  // Sanitise after rendering: the model's text may contain HTML of its own.
  target.innerHTML = window.DOMPurify.sanitize(html, {
    FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["style"],
  });
  for (const link of target.querySelectorAll("a[href]")) {
    link.setAttribute("target", "_blank");
    link.setAttribute("rel", "noopener noreferrer");
  }
  if (!final) return;
  for (const block of target.querySelectorAll("pre code")) {
    window.hljs?.highlightElement(block);
    const named = [...block.classList].find((name) => name.startsWith("language-"));
    const language = named ? named.slice(9) : block.result?.language || "text";
    const pre = block.parentElement;
    const frame = el(
      "div",
      { class: "code-frame", "data-testid": "code-block" },
      el(
        "div",
        { class: "code-frame-bar" },
        el("span", { class: "font-mono", "data-testid": "code-language" }, language),
        el(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-sm",
            "aria-label": `Copy code (${language})`,
            onclick: () => copyText(block.textContent).then(() => toast("Code copied.", "success")),
          },
          icon("fa-copy"),
          "Copy code",
        ),
      ),
    );
    pre.replaceWith(frame);
    pre.setAttribute("tabindex", "0");
    frame.append(pre);
  }
}

/** "TTFT 120 ms · 48.2 tok/s · 64 tokens": how this answer came. */
function speedNote(message) {
  const parts = [];
  if (typeof message.ttftMs === "number") parts.push(`TTFT ${Math.round(message.ttftMs)} ms`);
  const tokens = message.usage?.completion_tokens;
  if (typeof tokens === "number" && message.generationMs > 0 && tokens > 1) {
    parts.push(`${((tokens - 1) / (message.generationMs / 1000)).toFixed(1)} tok/s`);
  }
  if (typeof tokens === "number") parts.push(`${tokens} token${tokens === 1 ? "" : "s"}`);
  return parts;
}

function messageActions(message, index) {
  const isLast = index === current.messages.length - 1;
  const meta = [];
  if (message.model) meta.push(message.model);
  meta.push(...speedNote(message));
  if (message.stopped) meta.push("stopped");
  return el(
    "div",
    { class: "mt-1.5 flex items-center gap-1 text-xs text-slate-500 dark:text-slate-400" },
    el(
      "button",
      {
        type: "button",
        class: "btn btn-ghost btn-sm",
        title: "Copy the answer",
        "data-action": "copy",
        onclick: () => copyText(message.content).then(() => toast("Answer copied.", "success")),
      },
      icon("fa-solid fa-copy"),
      "Copy",
    ),
    isLast
      ? el(
          "button",
          {
            type: "button",
            class: "btn btn-ghost btn-sm",
            title: "Ask again for a new answer",
            "data-action": "regenerate",
            onclick: regenerate,
          },
          icon("fa-rotate-right"),
          "Regenerate",
        )
      : null,
    meta.length ? el("span", { class: "ml-2", "data-testid": "message-meta" }, meta.join(" · ")) : null,
  );
}

function messageNode(message, index) {
  if (message.role === "user") {
    return el(
      "div",
      { class: "group flex items-start justify-end gap-1", dataset: { role: "user" } },
      el(
        "button",
        {
          type: "button",
          class: "btn btn-ghost btn-sm mt-1 px-2 text-slate-500 dark:text-slate-400",
          title: "Edit and send again",
          "aria-label": "Edit message",
          "data-action": "edit",
          onclick: (event) => editMessage(index, event.currentTarget.parentElement),
        },
        icon("fa-pen"),
      ),
      el(
        "div",
        { class: "max-w-[85%] rounded-2xl rounded-br-md bg-indigo-600 px-4 py-2.5 text-sm break-words whitespace-pre-wrap text-white shadow-sm dark:bg-indigo-500" },
        message.content,
      ),
    );
  }
  if (message.role === "error") {
    return el(
      "div",
      { class: "alert alert-error", role: "alert", dataset: { role: "error", status: message.status ?? "" } },
      icon("fa-triangle-exclamation", "mt-0.5"),
      el(
        "div",
        { class: "flex-1" },
        el("p", { class: "font-semibold" }, message.title),
        el("p", { class: "mt-0.5" }, message.content),
        message.keyProblem
          ? el(
              "button",
              { type: "button", class: "btn btn-secondary btn-sm mt-2", onclick: forgetKey },
              icon("fa-key"),
              "Use another key",
            )
          : index === current.messages.length - 1
            ? el(
                "button",
                { type: "button", class: "btn btn-secondary btn-sm mt-2", onclick: regenerate },
                icon("fa-rotate-right"),
                "Try again",
              )
            : null,
      ),
    );
  }
  const body = el("div", { class: "markdown", "data-testid": "answer" });
  renderMarkdown(body, message.content, true);
  return el(
    "div",
    { class: "flex gap-3", dataset: { role: "assistant", state: message.stopped ? "stopped" : "done" } },
    el(
      "div",
      { class: "grid h-8 w-8 shrink-0 place-items-center rounded-lg bg-slate-200 text-sm text-slate-600 dark:bg-slate-800 dark:text-slate-300" },
      icon("fa-robot"),
    ),
    el("div", { class: "min-w-0 flex-1 pt-1" }, body, messageActions(message, index)),
  );
}

/** Turns a sent message into a form; saving drops what came after it and asks again. */
function editMessage(index, node) {
  if (controller) return;
  const field = el("textarea", { class: "input min-h-20 text-sm", "aria-label": "Edited message", rows: "3" });
  field.value = current.messages[index].content;
  const form = el(
    "form",
    { class: "flex w-full max-w-[85%] flex-col gap-2", "data-testid": "edit-form" },
    field,
    el(
      "div",
      { class: "flex justify-end gap-2" },
      el("button", { type: "button", class: "btn btn-secondary btn-sm", onclick: () => renderMessages() }, "Cancel"),
      el("button", { type: "submit", class: "btn btn-primary btn-sm" }, icon("fa-paper-plane"), "Save and send"),
    ),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = field.value.trim();
    if (!text) return;
    current.messages = [...current.messages.slice(0, index), { role: "user", content: text }];
    current.updated = Date.now();
    save();
    renderMessages();
    await complete();
  });
  field.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      renderMessages();
    }
  });
  node.replaceChildren(form);
  field.focus();
}

function renderMessages() {
  messagesBox.replaceChildren(...current.messages.map(messageNode));
  emptyState.hidden = current.messages.length > 0 || !keyPanel.hidden;
  scrollToEnd(true);
}

function nearBottom() {
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
}

function scrollToEnd(force = false) {
  if (force || nearBottom()) scroller.scrollTop = scroller.scrollHeight;
}

// --- streaming ----------------------------------------------------------------------

/** Turns an HTTP error from the gateway into what the visitor should read. */
function describeError(error) {
  const status = error.status;
  if (status === 401) {
    return {
      title: "Key not accepted (401)",
      content: `${error.message} Paste a valid key to go on.`,
    };
  }
  if (status === 403 && error.code === "key_revoked") {
    return { title: "Key revoked (403)", content: `${error.message} Ask your administrator for a new key.` };
  }
  if (status === 403 && error.code === "key_expired") {
    return { title: "Key expired (403)", content: `${error.message} Ask your administrator for a new key.` };
  }
  if (status === 403 && error.code === "model_not_allowed") {
    return { title: "Model not allowed (403)", content: `${error.message} Pick another model.` };
  }
  if (status === 403) return { title: "Not allowed (403)", content: error.message };
  if (status === 429) {
    // The gateway's own message already says when; only a bare 429 needs the header's word.
    const says = /try again/i.test(error.message);
    const wait = error.retryAfter !== null && !says ? ` Try again in ${Math.ceil(error.retryAfter)} s.` : "";
    return { title: "Rate limit reached (429)", content: `${error.message}${wait}` };
  }
  if (status === 502 || status === 503 || status === 504) {
    return {
      title: `The model backend is unavailable (${status})`,
      content: `${error.message} This is not your fault; try again shortly.`,
    };
  }
  if (status) return { title: `Request failed (${status})`, content: error.message };
  return { title: "Connection problem", content: error.message || "The gateway could not be reached." };
}

function pushError(error) {
  const described = describeError(error);
  const keyProblem = error.status === 401 || KEY_CODES.has(error.code);
  current.messages.push({ role: "error", status: error.status ?? null, keyProblem, ...described });
  current.updated = Date.now();
  save();
  renderMessages();
}

function payloadMessages() {
  const messages = [];
  const system = systemPrompt.value.trim();
  if (system) messages.push({ role: "system", content: system });
  for (const message of current.messages) {
    if ((message.role === "user" || message.role === "assistant") && message.content) {
      messages.push({ role: message.role, content: message.content });
    }
  }
  return messages;
}

/** Yields the JSON payload of each `data:` event of an SSE response body. */
async function* sseEvents(body, signal) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split(/\r?\n\r?\n/);
      buffer = events.pop();
      for (const event of events) {
        const data = event
          .split(/\r?\n/)
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (!data) continue; // comments such as ": keep-alive"
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  } finally {
    if (signal.aborted) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function setStreaming(streaming) {
  sendButton.hidden = streaming;
  stopButton.hidden = !streaming;
  modelSelect.disabled = streaming || models.length === 0;
  for (const button of messagesBox.querySelectorAll("[data-action=regenerate]")) {
    button.disabled = streaming;
  }
}

async function complete() {
  const key = clientKey.get();
  const model = modelSelect.value;
  if (!key || !model) return;
  const conversation = current;
  const message = { role: "assistant", content: "", model };
  const body = el("div", { class: "markdown streaming-caret", "data-testid": "answer" });
  const node = el(
    "div",
    { class: "flex gap-3", dataset: { role: "assistant", state: "streaming" } },
    el(
      "div",
      { class: "grid h-8 w-8 shrink-0 place-items-center rounded-lg bg-slate-200 text-sm text-slate-600 dark:bg-slate-800 dark:text-slate-300" },
      icon("fa-robot"),
    ),
    el("div", { class: "min-w-0 flex-1 pt-1" }, body),
  );
  messagesBox.append(node);
  scrollToEnd(true);

  const request = {
    model,
    messages: payloadMessages(),
    stream: true,
    stream_options: { include_usage: true },
    temperature: Number(temperature.value),
  };
  const limit = Number.parseInt(maxTokens.value, 10);
  if (limit > 0) request.max_tokens = limit;
  const nucleus = Number.parseFloat(topP.value);
  if (nucleus > 0 && nucleus <= 1) request.top_p = nucleus;
  const fixedSeed = Number.parseInt(seed.value, 10);
  if (Number.isInteger(fixedSeed)) request.seed = fixedSeed;
  const stops = stopList();
  if (stops.length) request.stop = stops;

  controller = new AbortController();
  const signal = controller.signal;
  setStreaming(true);
  let frame = 0;
  const paint = () => {
    frame = 0;
    const follow = nearBottom();
    renderMarkdown(body, message.content, false);
    if (follow) scrollToEnd(true);
  };
  const started = performance.now();
  let firstToken = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${key}` },
      body: JSON.stringify(request),
      signal,
      credentials: "omit",
    });
    if (!response.ok) throw await errorFrom(response);
    for await (const chunk of sseEvents(response.body, signal)) {
      if (chunk.error) {
        const error = new Error(chunk.error.message || "The model reported an error.");
        error.status = Number(chunk.error.code) || 500;
        throw error;
      }
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        if (firstToken === null) {
          firstToken = performance.now();
          message.ttftMs = firstToken - started;
        }
        message.content += delta;
        if (!frame) frame = window.requestAnimationFrame(paint);
      }
      if (chunk.usage) message.usage = chunk.usage;
    }
  } catch (error) {
    if (signal.aborted) {
      message.stopped = true;
    } else {
      if (frame) window.cancelAnimationFrame(frame);
      node.remove();
      if (message.content) conversation.messages.push(message);
      controller = null;
      setStreaming(false);
      if (conversation === current) pushError(error);
      return;
    }
  } finally {
    if (frame) window.cancelAnimationFrame(frame);
    if (firstToken !== null) message.generationMs = performance.now() - firstToken;
  }
  controller = null;
  setStreaming(false);
  if (message.content || message.stopped) conversation.messages.push(message);
  conversation.updated = Date.now();
  save();
  if (conversation === current) renderMessages();
}

async function send() {
  const text = prompt.value.trim();
  if (!text || controller || !modelSelect.value) return;
  current.messages.push({ role: "user", content: text });
  if (current.title === "New chat") current.title = text.length > 48 ? `${text.slice(0, 47)}…` : text;
  current.model = modelSelect.value;
  current.updated = Date.now();
  prompt.value = "";
  resizePrompt();
  save();
  renderMessages();
  await complete();
}

async function regenerate() {
  if (controller) return;
  // Drop the last answer (and any error after it) and ask again.
  while (current.messages.length && current.messages[current.messages.length - 1].role !== "user") {
    current.messages.pop();
  }
  if (!current.messages.length) return;
  save();
  renderMessages();
  await complete();
}

// --- the key and the models ---------------------------------------------------------

function showKeyPanel(message = "") {
  keyPanel.hidden = false;
  emptyState.hidden = true;
  $("key-status").hidden = true;
  $("key-error").hidden = !message;
  $("key-error").querySelector("span").textContent = message;
  prompt.disabled = true;
  sendButton.disabled = true;
  modelSelect.disabled = true;
  $("key-input").focus();
}

function forgetKey() {
  clientKey.clear();
  models = [];
  modelSelect.replaceChildren(el("option", { value: "" }, "No models yet"));
  showKeyPanel();
}

async function loadModels() {
  const key = clientKey.get();
  if (!key) {
    showKeyPanel();
    return;
  }
  let response;
  try {
    response = await fetch("/v1/models", {
      headers: { Authorization: `Bearer ${key}` },
      credentials: "omit",
    });
  } catch {
    showKeyPanel("The gateway could not be reached. Check your connection and try again.");
    return;
  }
  if (!response.ok) {
    const error = await errorFrom(response);
    if (response.status === 401 || response.status === 403) {
      clientKey.clear();
      showKeyPanel(`This key was not accepted (${response.status}): ${error.message}`);
    } else {
      showKeyPanel(describeError(error).title + ": " + error.message);
    }
    return;
  }
  const list = await response.json();
  models = (list.data || []).map((card) => card.id).sort();
  keyPanel.hidden = true;
  $("key-status").hidden = false;
  $("key-label").textContent = `${key.slice(0, 12)}…`;
  if (models.length === 0) {
    modelSelect.replaceChildren(el("option", { value: "" }, "No model available"));
  } else {
    modelSelect.replaceChildren(...models.map((id) => el("option", { value: id }, id)));
    const wanted = current.model && models.includes(current.model) ? current.model : models[0];
    modelSelect.value = wanted;
  }
  modelSelect.disabled = models.length === 0;
  prompt.disabled = models.length === 0;
  sendButton.disabled = models.length === 0;
  emptyState.hidden = current.messages.length > 0;
  if (models.length === 0) {
    pushError({ status: 503, message: "No model is being served right now." });
  }
  prompt.focus();
}

// --- settings, sidebar and composer -------------------------------------------------------

function stopList() {
  return stopSequences.value
    .split("\n")
    .map((line) => line.replace(/\\n/g, "\n"))
    .filter((line) => line.trim())
    .slice(0, 4);
}

function updateTemperatureLabel() {
  $("temperature-value").textContent = Number(temperature.value).toFixed(1);
}

function resizePrompt() {
  prompt.style.height = "auto";
  prompt.style.height = `${Math.min(prompt.scrollHeight, 192)}px`;
}

function openSidebar() {
  $("sidebar").classList.replace("hidden", "flex");
  $("sidebar-backdrop").hidden = false;
  $("open-sidebar").setAttribute("aria-expanded", "true");
  $("new-chat").focus();
}

function closeSidebar() {
  if (window.matchMedia("(min-width: 1024px)").matches) return;
  $("sidebar").classList.replace("flex", "hidden");
  $("sidebar-backdrop").hidden = true;
  $("open-sidebar").setAttribute("aria-expanded", "false");
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("key-input").value.trim();
  if (!value) return;
  clientKey.set(value);
  $("key-input").value = "";
  loadModels();
});
$("forget-key").addEventListener("click", forgetKey);
$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
prompt.addEventListener("input", resizePrompt);
stopButton.addEventListener("click", () => controller?.abort());
$("new-chat").addEventListener("click", () => {
  if (current.messages.length === 0) {
    closeSidebar();
    prompt.focus();
    return;
  }
  selectConversation(newConversation());
  prompt.focus();
});
$("clear-chat").addEventListener("click", () => {
  if (controller) controller.abort();
  const conversation = current;
  const kept = { messages: conversation.messages, title: conversation.title };
  if (!kept.messages.length) return;
  conversation.messages = [];
  conversation.title = "New chat";
  save();
  renderMessages();
  toast("Conversation cleared.", "info", {
    label: "Undo",
    run: () => {
      Object.assign(conversation, kept);
      if (!conversations.includes(conversation)) conversations.unshift(conversation);
      selectConversation(conversation);
      save();
    },
  });
});
$("settings-toggle").addEventListener("click", (event) => {
  const panel = $("settings");
  panel.hidden = !panel.hidden;
  event.currentTarget.setAttribute("aria-expanded", String(!panel.hidden));
});
systemPrompt.addEventListener("change", () => {
  current.system = systemPrompt.value;
  save();
});
temperature.addEventListener("input", () => {
  updateTemperatureLabel();
  current.temperature = Number(temperature.value);
});
temperature.addEventListener("change", save);
maxTokens.addEventListener("change", () => {
  const value = Number.parseInt(maxTokens.value, 10);
  current.maxTokens = value > 0 ? value : null;
  save();
});
topP.addEventListener("change", () => {
  const value = Number.parseFloat(topP.value);
  current.topP = value > 0 && value <= 1 ? value : null;
  save();
});
seed.addEventListener("change", () => {
  const value = Number.parseInt(seed.value, 10);
  current.seed = Number.isInteger(value) ? value : null;
  save();
});
stopSequences.addEventListener("change", () => {
  current.stop = stopList();
  save();
});
conversationSearch.addEventListener("input", renderConversationList);
// Escape stops an answer being written (and closes the conversations drawer).
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  if (controller) {
    event.preventDefault();
    controller.abort();
  } else if (!$("sidebar-backdrop").hidden) {
    closeSidebar();
  }
});
$("export-markdown").addEventListener("click", () => download(current, "md"));
$("export-json").addEventListener("click", () => download(current, "json"));
$("import-file").addEventListener("change", async (event) => {
  const file = event.currentTarget.files?.[0];
  event.currentTarget.value = "";
  if (!file) return;
  try {
    const imported = parseConversation(await file.text(), file.name);
    conversations.unshift(imported);
    selectConversation(imported);
    save();
    toast(`Imported “${imported.title}”.`, "success");
  } catch (error) {
    toast(`Could not import ${file.name}: ${error.message}`, "error");
  }
});
modelSelect.addEventListener("change", () => {
  current.model = modelSelect.value;
  save();
});
$("open-sidebar").addEventListener("click", openSidebar);
$("close-sidebar").addEventListener("click", closeSidebar);
$("sidebar-backdrop").addEventListener("click", closeSidebar);

const remembered = window.localStorage.getItem(CURRENT);
selectConversation(conversations.find((item) => item.id === remembered) || conversations[0] || newConversation());
loadModels();
