// @ts-check
// Sky Classroom — the chat of both pages: a list, and an input whose Enter sends `chat {text}`.

import { $, h, clock, input } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").ChatOut} ChatOut */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */

const CHAT_KEEP = 200; // messages kept on the page
/** @type {Record<string, string>} */
const CHAT_ERRORS = {
  rate_limited: "发送太快，这条消息没有发出，请稍等几秒再发。Too fast — this message was not sent. Wait a few seconds.",
  bad_message: "消息没有发出（最多 500 字）。The message was not sent (500 characters at most).",
  offline: "现在没有连接，消息没有发出。Not connected — the message was not sent.",
};

/**
 * The chat. Elements: #chat-list, #chat-form, #chat-input, #chat-status, #chat-empty.
 */
export class ChatBox {
  /** @param {Signaling} signaling */
  constructor(signaling) {
    this.signaling = signaling;
    this.list = $("chat-list");
    this.form = $("chat-form", HTMLFormElement);
    this.input = input("chat-input");
    this.status = $("chat-status");
    this.empty = document.getElementById("chat-empty");
    this.received = 0;
    /** @type {string | null} */
    this.selfId = null;
    /** @type {{text: string, at: number, restored?: boolean} | null} restored to the input when the server drops it */
    this.lastSent = null;
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    // A phone's on-screen keyboard takes half the screen: the input and its button come into view
    // above it (and stay there: sticky while typing, style.css).
    const keepInView = () => {
      if (document.activeElement === this.input) this.form.scrollIntoView({ block: "end" });
    };
    const soon = () => setTimeout(keepInView, 150); // once the keyboard is up and the layout has followed
    this.input.addEventListener("focus", soon);
    window.visualViewport?.addEventListener("resize", soon);
  }

  submit() {
    const text = this.input.value.trim();
    if (!text) return;
    if (!this.signaling.send({ type: "chat", text: text.slice(0, 500) })) {
      this.problem("offline");
      return;
    }
    this.lastSent = { text, at: performance.now() };
    this.input.value = "";
    this.status.hidden = true;
  }

  /**
   * A server error that belongs to the chat: shown under the input. True when taken.
   * @param {ErrorOut} msg
   */
  takeError(msg) {
    const sent = this.lastSent;
    const recent = sent && performance.now() - sent.at < 5000;
    if (!sent || !recent || !(msg.code in CHAT_ERRORS)) return false;
    // Several sent at once may be refused: each refusal is the chat's, the text comes back once.
    if (!this.input.value && !sent.restored) this.input.value = sent.text;
    sent.restored = true;
    this.problem(msg.code);
    return true;
  }

  /** @param {string} code */
  problem(code) {
    this.status.textContent = CHAT_ERRORS[code];
    this.status.dataset.code = code;
    this.status.hidden = false;
  }

  /** @param {ChatOut} msg */
  add(msg) {
    this.received += 1;
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    const mine = !!this.selfId && msg.from_id === this.selfId;
    const who = h(
      "span",
      { class: "chat-who" },
      h("span", { class: "chat-name", text: msg.name || "?" }),
      msg.role === "teacher" ? h("span", { class: "chat-role", text: "老师 Teacher" }) : null,
      mine ? h("span", { class: "chat-role", text: "我 Me" }) : null,
      h("time", { class: "chat-time", text: clock(msg.at || Date.now() / 1000) }),
    );
    const item = h("li", { class: `chat-msg role-${msg.role}${mine ? " mine" : ""}` }, who, h("p", { class: "chat-text", text: msg.text }));
    this.list.append(item);
    while (this.list.children.length > CHAT_KEEP) this.list.firstElementChild?.remove();
    if (this.empty) this.empty.hidden = true;
    if (nearBottom || mine) this.list.scrollTop = this.list.scrollHeight;
  }

  /** @param {boolean} on */
  setEnabled(on) {
    this.input.disabled = !on;
    for (const b of this.form.querySelectorAll("button")) b.disabled = !on;
  }
}
