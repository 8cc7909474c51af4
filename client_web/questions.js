// @ts-check
// Sky Classroom — questions instead of a chat to every screen: the pupil's "Ask" box and the
// answered questions (`question_answered`); the teacher's queue (`questions`) with Answer, Pass
// on to the host (a class teacher in a broadcast's section) and Dismiss; and a broadcast host's
// sections, one row per class (`sections`), never the pupils' names.

import { $, h, clock, input } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").QuestionOut} QuestionOut */
/** @typedef {import("./protocol").Sections} Sections */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */

/** The answered questions, newest last (#answered, #answered-box). */
class AnsweredList {
  constructor() {
    this.box = $("answered-box");
    this.list = $("answered");
    /** @type {Set<string>} */
    this.seen = new Set();
  }

  /** @param {QuestionOut} q */
  add(q) {
    if (this.seen.has(q.question_id)) return;
    this.seen.add(q.question_id);
    const from = q.section ? `${q.name} · ${q.section}` : q.name;
    this.list.append(
      h(
        "li",
        { class: "answered", dataset: { id: q.question_id } },
        h("p", { class: "q-text", text: q.text }),
        h("p", { class: "q-from small", text: from }),
        q.answer ? h("p", { class: "q-answer", text: `答 A: ${q.answer}` }) : null,
      ),
    );
    this.box.hidden = false;
  }
}

/** The pupil's box (#ask-form, #ask-input, #ask-status) and the answered questions. */
export class AskBox {
  /** @param {Signaling} signaling */
  constructor(signaling) {
    this.signaling = signaling;
    this.form = $("ask-form");
    this.input = input("ask-input");
    this.status = $("ask-status");
    this.answered = new AnsweredList();
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      if (this.signaling.send({ type: "ask", text })) {
        this.input.value = "";
        this.say("已发送给老师 Sent to the teacher", "sent");
      }
    });
  }

  /** @param {string} text @param {string} code */
  say(text, code) {
    this.status.textContent = text;
    this.status.dataset.code = code;
    this.status.hidden = false;
  }

  /** @param {boolean} on */
  setEnabled(on) {
    this.input.disabled = !on;
  }

  /**
   * A refusal of a question (a flood); true when shown here.
   * @param {ErrorOut} msg
   */
  takeError(msg) {
    if (msg.code !== "rate_limited" || !/question/.test(msg.message)) return false;
    this.say("提问太频繁，请稍后再问 Too many questions; ask again in a moment", "rate_limited");
    return true;
  }
}

/** The teacher's queue (#questions, #questions-count, #questions-empty) and the answered list. */
export class QuestionQueue {
  /** @param {Signaling} signaling */
  constructor(signaling) {
    this.signaling = signaling;
    this.list = $("questions");
    this.count = $("questions-count");
    this.empty = $("questions-empty");
    this.answered = new AnsweredList();
    /** A class teacher in a broadcast's section may pass a question on to its host. */
    this.canPass = false;
    /** @type {QuestionOut[]} */
    this.waiting = [];
    /** Each question's row, kept while it waits: an answer being typed survives each refresh. @type {Map<string, HTMLElement>} */
    this.rows = new Map();
  }

  /** @param {QuestionOut[]} waiting */
  take(waiting) {
    this.waiting = Array.isArray(waiting) ? waiting : [];
    this.render();
  }

  /** @param {string} type @param {Record<string, string>} fields */
  act(type, fields) {
    this.signaling.send(/** @type {any} */ ({ type, ...fields }));
  }

  /** @param {QuestionOut} q */
  row(q) {
    const answer = h("input", { class: "q-answer-input", maxlength: 500, placeholder: "回答（可不填）Answer (optional)" });
    const from = q.section ? `${q.name} · ${q.section}` : q.name;
    return h(
      "li",
      { class: "question", dataset: { id: q.question_id, passed: String(!!q.passed) } },
      h("p", { class: "q-text", text: q.text }),
      h("p", { class: "q-from small", text: `${from} · ${clock(q.at)}` }),
      q.passed
        ? h("p", { class: "pill", text: "已转给主讲老师 Passed to the host" })
        : h(
            "div",
            { class: "row" },
            answer,
            h("button", {
              type: "button",
              class: "btn btn-small q-answer-btn",
              text: "回答 Answer",
              onclick: () => this.act("answer_question", { question_id: q.question_id, answer: answer.value.trim() }),
            }),
            this.canPass
              ? h("button", {
                  type: "button",
                  class: "btn btn-small q-pass",
                  text: "转给主讲 Pass to the host",
                  onclick: () => this.act("pass_question", { question_id: q.question_id }),
                })
              : null,
            h("button", {
              type: "button",
              class: "btn btn-small btn-quiet q-dismiss",
              text: "忽略 Dismiss",
              onclick: () => this.act("dismiss_question", { question_id: q.question_id }),
            }),
          ),
    );
  }

  render() {
    /** @type {Map<string, HTMLElement>} */
    const rows = new Map();
    for (const q of this.waiting) {
      const kept = this.rows.get(q.question_id);
      rows.set(q.question_id, kept && kept.dataset.passed === String(!!q.passed) ? kept : this.row(q));
    }
    this.rows = rows;
    this.list.replaceChildren(...rows.values());
    const n = this.waiting.filter((q) => !q.passed).length;
    this.count.textContent = String(n);
    this.count.dataset.n = String(n);
    this.empty.hidden = this.waiting.length > 0;
  }
}

/** A broadcast host's view of its sections (#sections-box, #sections, #sections-total). */
export class SectionsTable {
  constructor() {
    this.box = $("sections-box");
    this.body = $("sections");
    this.total = $("sections-total");
  }

  /** @param {Sections} msg */
  take(msg) {
    this.box.hidden = false;
    this.body.replaceChildren(
      ...msg.rows.map((r) =>
        h(
          "tr",
          { dataset: { part: r.part } },
          h("th", { scope: "row", text: r.label }),
          h("td", { class: "num", text: String(r.pupils) }),
          h("td", { class: "num", text: String(r.hands) }),
          h("td", { class: "num", text: String(r.questions) }),
          h("td", { class: "poll-counts", text: r.poll_counts.length ? r.poll_counts.join(" / ") : "—" }),
        ),
      ),
    );
    this.total.textContent = `${msg.rows.length} 个班 sections · ${msg.pupils} 名学生 pupils · ${msg.hands} ✋`;
  }
}
