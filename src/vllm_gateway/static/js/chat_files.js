// A chat conversation as a file: exported as Markdown or JSON, and read back from either.
const FORMAT = "vllm-gateway.chat/1";
const ROLES = { user: "User", assistant: "Assistant", system: "System" };
const SETTINGS = ["model", "system", "temperature", "maxTokens", "topP", "seed", "stop"];

function spoken(conversation) {
  return conversation.messages.filter((message) => message.role === "user" || message.role === "assistant");
}

/** The conversation as JSON: its title, settings and messages (errors are left out). */
export function toJson(conversation) {
  const settings = Object.fromEntries(SETTINGS.map((name) => [name, conversation[name] ?? null]));
  const messages = spoken(conversation).map(({ role, content, model, usage }) => ({ role, content, model, usage }));
  return JSON.stringify({ format: FORMAT, title: conversation.title, ...settings, messages }, null, 2);
}

/** The conversation as Markdown: a `## User` / `## Assistant` section per message. */
export function toMarkdown(conversation) {
  const parts = [`# ${conversation.title}`, ""];
  if (conversation.model) parts.push(`Model: \`${conversation.model}\``, "");
  if (conversation.system) parts.push(`## ${ROLES.system}`, "", conversation.system, "");
  for (const message of spoken(conversation)) parts.push(`## ${ROLES[message.role]}`, "", message.content, "");
  return parts.join("\n");
}

/** Starts a download of the conversation as "md" or "json". */
export function download(conversation, kind) {
  const text = kind === "json" ? toJson(conversation) : toMarkdown(conversation);
  const type = kind === "json" ? "application/json" : "text/markdown";
  const url = URL.createObjectURL(new Blob([text], { type }));
  const name = conversation.title.replace(/[^\p{L}\p{N} _-]+/gu, "").trim().slice(0, 60) || "conversation";
  const link = document.createElement("a");
  link.href = url;
  link.download = `${name}.${kind}`;
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function fromJson(data) {
  if (!data || !Array.isArray(data.messages)) throw new Error("it has no messages");
  const messages = data.messages
    .filter((message) => message && (message.role === "user" || message.role === "assistant"))
    .map((message) => ({ role: message.role, content: String(message.content ?? ""), model: message.model, usage: message.usage }));
  const settings = Object.fromEntries(SETTINGS.map((name) => [name, data[name] ?? null]));
  return { title: String(data.title || "Imported chat"), ...settings, messages };
}

function fromMarkdown(text) {
  const title = (text.match(/^# (.+)$/m) || [])[1]?.trim() || "Imported chat";
  const model = (text.match(/^Model: `([^`]+)`$/m) || [])[1] || "";
  const sections = text.split(/^## (User|Assistant|System)[ \t]*$/m);
  const messages = [];
  let system = "";
  for (let index = 1; index < sections.length; index += 2) {
    const role = sections[index].toLowerCase();
    const content = sections[index + 1].replace(/^\n+|\n+$/g, "");
    if (role === "system") system = content;
    else messages.push({ role, content });
  }
  if (!messages.length) throw new Error("no “## User” or “## Assistant” section");
  return { title, model, system, messages };
}

/** A new conversation from an exported file's text (JSON or Markdown). */
export function parseConversation(text, name = "") {
  const json = name.endsWith(".json") || text.trimStart().startsWith("{");
  const read = json ? fromJson(JSON.parse(text)) : fromMarkdown(text);
  return {
    id: crypto.randomUUID(),
    created: Date.now(),
    updated: Date.now(),
    temperature: 0.7,
    maxTokens: null,
    topP: null,
    seed: null,
    stop: [],
    ...Object.fromEntries(Object.entries(read).filter(([, value]) => value !== null)),
  };
}
