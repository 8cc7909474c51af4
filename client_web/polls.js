// @ts-check
// Sky Classroom — polls. The teacher writes a question and 2–6 answers (`poll_open`), watches
// the answers come in (`poll_results`), and closes it (`poll_close`, showing the results or
// not); the students get `poll`, answer once (`poll_answer`), and see the final results when the
// teacher shows them (TeacherPoll, StudentPoll; the result bars are the same on both pages).

import { $, h, button, input, LETTERS } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").PollOut} PollOut */
/** @typedef {import("./protocol").PollResults} PollResults */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */

const POLL_MIN = 2;
const POLL_MAX = 6;
const POLL_START = 4; // answer boxes shown at first (A–D); empty ones are left out
const ANSWER_ERRORS_MS = 5000; // an error this soon after answering is the answer's

/**
 * The results as bars, one per answer; `mine` is marked.
 * @param {HTMLElement} list
 * @param {{options: string[], counts: number[], answered: number}} poll
 * @param {number | null} [mine]
 */
export function renderBars(list, poll, mine = null) {
  const total = Math.max(1, poll.answered);
  list.replaceChildren(
    ...poll.options.map((option, i) => {
      const count = poll.counts[i] || 0;
      const pct = Math.round((100 * count) / total);
      return h(
        "li",
        { class: `bar${mine === i ? " mine" : ""}`, dataset: { count } },
        h("span", { class: "bar-label" }, h("span", { class: "letter", text: LETTERS[i] }), ` ${option}`),
        h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: `width: ${poll.answered ? pct : 0}%` })),
        h("span", { class: "bar-count", text: `${count} (${poll.answered ? pct : 0}%)` }),
      );
    }),
  );
}

/**
 * The poll as a student has it.
 * @typedef {object} Poll
 * @property {string} poll_id
 * @property {string} question
 * @property {string[]} options
 * @property {number | null} answered our answer (an index), if any
 * @property {number} answeredAt performance.now() of our answer
 * @property {boolean} already the server said we had answered before
 * @property {boolean} closed
 * @property {PollResults | null} results the final results, when shown
 * @property {number} epoch the websocket it came on
 */

/** The student's card (#poll-card): one button per answer, then the results. */
export class StudentPoll {
  /**
   * @param {Signaling} signaling
   * @param {() => void} render
   */
  constructor(signaling, render) {
    this.signaling = signaling;
    this.renderPage = render;
    /** @type {Poll | null} */
    this.poll = null;
    this.card = $("poll-card");
    this.choices = $("poll-choices");
    this.results = $("poll-results");
    this.note = $("poll-note");
    this.question = $("poll-question");
    this.status = $("poll-status");
  }

  stats() {
    const poll = this.poll;
    return poll ? { poll_id: poll.poll_id, answered: poll.answered, closed: poll.closed, final: !!poll.results } : null;
  }

  /** @param {PollOut} msg */
  take(msg) {
    const old = this.poll;
    const same = !!old && old.poll_id === msg.poll_id;
    const answered = Number.isInteger(msg.answered) ? /** @type {number} */ (msg.answered) : old && same ? old.answered : null;
    this.poll = {
      poll_id: msg.poll_id,
      question: msg.question,
      options: Array.isArray(msg.options) ? msg.options : [],
      answered,
      answeredAt: old && same ? old.answeredAt : 0,
      already: old && same ? old.already : false,
      closed: false,
      results: null,
      epoch: this.signaling.epoch,
    };
    if (same && this.choices.children.length) return;
    // A new question: bring the card into view (on a phone it sits under the video).
    requestAnimationFrame(() => this.card.scrollIntoView({ block: "nearest", behavior: "smooth" }));
    this.choices.replaceChildren(
      ...this.poll.options.map((option, i) =>
        h(
          "button",
          { type: "button", class: "btn poll-choice", dataset: { choice: i }, onclick: () => this.answer(i) },
          h("span", { class: "letter", text: LETTERS[i] }),
          ` ${option}`,
        ),
      ),
    );
  }

  /** @param {number} choice */
  answer(choice) {
    const poll = this.poll;
    if (!poll || poll.answered !== null || poll.closed) return;
    if (!this.signaling.send({ type: "poll_answer", poll_id: poll.poll_id, choice })) {
      this.note.textContent = "现在没有连接，请稍后再选 Not connected — choose again in a moment.";
      return;
    }
    poll.answered = choice;
    poll.answeredAt = performance.now();
    this.renderPage();
  }

  /** @param {string} pollId */
  closed(pollId) {
    if (this.poll && this.poll.poll_id === pollId) this.poll.closed = true;
  }

  /** Back after a dropped connection: a poll still open came again; one that did not was closed meanwhile. */
  rejoined() {
    if (this.poll && !this.poll.closed && this.poll.epoch !== this.signaling.epoch) this.poll.closed = true;
  }

  /** @param {PollResults} msg */
  finalResults(msg) {
    if (!msg.final) return;
    let poll = this.poll;
    if (!poll || poll.poll_id !== msg.poll_id) {
      // Results of a poll this page did not see (joined after it opened): show them all the same.
      poll = { ...msg, answered: null, answeredAt: 0, already: false, closed: true, results: null, epoch: this.signaling.epoch };
      this.poll = poll;
      this.choices.replaceChildren();
    }
    poll.closed = true;
    poll.results = msg;
  }

  /**
   * An error about our answer; true when shown here.
   * @param {ErrorOut} msg
   */
  takeError(msg) {
    const poll = this.poll;
    if (!poll || !poll.answeredAt || performance.now() - poll.answeredAt >= ANSWER_ERRORS_MS) return false;
    if (msg.code === "already_answered") poll.already = true;
    else if (msg.code === "bad_state") poll.closed = true; // the poll ended before the answer arrived
    else return false;
    this.renderPage();
    return true;
  }

  /** @param {boolean} inClass */
  render(inClass) {
    const poll = this.poll;
    this.card.hidden = !poll;
    if (!poll) return;
    if (this.question.textContent !== poll.question) this.question.textContent = poll.question;
    const answered = poll.answered !== null;
    for (const b of this.choices.children) {
      if (!(b instanceof HTMLButtonElement)) continue;
      const i = Number(b.dataset.choice);
      b.disabled = answered || poll.closed || !inClass;
      b.classList.toggle("chosen", poll.answered === i);
      b.setAttribute("aria-pressed", String(poll.answered === i));
    }
    this.choices.hidden = !!poll.results;
    this.results.hidden = !poll.results;
    /** @type {[string, string]} */
    let label;
    if (poll.results) label = ["结果 Results", "results"];
    else if (poll.closed) label = ["已结束 Closed", "closed"];
    else if (answered) label = ["已提交 Answered", "answered"];
    else label = ["请选择 Choose one", "open"];
    if (this.status.textContent !== label[0]) this.status.textContent = label[0];
    this.status.dataset.state = label[1];
    this.card.dataset.state = label[1];
    const r = poll.results;
    if (r) {
      if (this.results.dataset.pollId !== r.poll_id) {
        this.results.dataset.pollId = r.poll_id;
        renderBars(this.results, r, poll.answered);
      }
      this.note.textContent = `共 ${r.answered} 人回答 ${r.answered} answered` + (answered ? " · 您的答案已标出 Yours is marked" : "");
    } else if (poll.closed) {
      this.note.textContent = "投票已结束 The poll has ended.";
    } else if (poll.already) {
      this.note.textContent = "您已经回答过了，第一次的答案有效 You answered already — your first answer counts.";
    } else if (answered) {
      this.note.textContent = "已提交，等待老师公布结果 Answered — waiting for the teacher.";
    } else {
      this.note.textContent = inClass ? "" : "正在重新连接… Reconnecting…";
    }
  }
}

/** The teacher's poll: the form (#poll-form), then the live results (#poll-live). */
export class TeacherPoll {
  /**
   * @param {Signaling} signaling
   * @param {() => void} render
   */
  constructor(signaling, render) {
    this.signaling = signaling;
    this.renderPage = render;
    /** @type {PollResults | null} the latest poll_results */
    this.poll = null;
    /** @type {{question: string, options: string[]} | null} between "Ask" and its first results */
    this.asked = null;
    /** @type {Set<string>} poll ids closed here: later non-final results for them are stale */
    this.closedPolls = new Set();
    this.form = $("poll-form", HTMLFormElement);
    this.question = input("poll-question");
    this.options = $("poll-options");
    this.addBtn = button("poll-add");
    this.askBtn = button("poll-ask");
    this.formStatus = $("poll-form-status");
    this.live = $("poll-live");
    this.closeBtn = button("poll-close");
    this.closeShowBtn = button("poll-close-show");
    this.form.addEventListener("submit", (ev) => this.ask(ev));
    this.addBtn.addEventListener("click", () => this.addOption()?.focus());
    this.closeBtn.addEventListener("click", () => this.close(false));
    this.closeShowBtn.addEventListener("click", () => this.close(true));
    $("poll-new").addEventListener("click", () => {
      this.poll = null;
      this.reset();
      this.renderLive();
      this.renderPage();
      this.question.focus();
    });
    this.reset();
  }

  stats() {
    return this.poll ? { poll_id: this.poll.poll_id, answered: this.poll.answered, final: this.poll.final } : null;
  }

  addOption(value = "") {
    const n = this.options.children.length;
    if (n >= POLL_MAX) return;
    const box = h("input", { class: "poll-option-input", maxlength: 100, placeholder: `答案 Answer ${LETTERS[n]}` });
    box.value = value;
    this.options.append(h("label", { class: "poll-option-row" }, h("span", { class: "letter", text: LETTERS[n] }), box));
    this.addBtn.disabled = this.options.children.length >= POLL_MAX;
    return box;
  }

  reset() {
    this.question.value = "";
    this.options.replaceChildren();
    for (let i = 0; i < POLL_START; i++) this.addOption();
    this.formStatus.hidden = true;
  }

  /** @param {string} text */
  problem(text) {
    this.formStatus.textContent = text;
    this.formStatus.hidden = false;
  }

  /** @param {Event} ev */
  ask(ev) {
    ev.preventDefault();
    const question = this.question.value.trim();
    const options = [...this.options.querySelectorAll("input")].map((i) => i.value.trim()).filter(Boolean);
    if (!question) return this.problem("请写下问题 Please write the question.");
    if (options.length < POLL_MIN) return this.problem("至少需要两个答案 Write at least two answers.");
    if (!this.signaling.send({ type: "poll_open", question: question.slice(0, 300), options: options.map((o) => o.slice(0, 100)) })) {
      return this.problem("现在没有连接 Not connected.");
    }
    this.formStatus.hidden = true;
    this.asked = { question, options };
    this.poll = null;
    this.renderLive();
    this.renderPage();
  }

  /** @param {boolean} show */
  close(show) {
    if (!this.poll || this.poll.final) return;
    if (this.signaling.send({ type: "poll_close", poll_id: this.poll.poll_id, show })) this.closedPolls.add(this.poll.poll_id);
  }

  /** @param {PollResults} msg */
  takeResults(msg) {
    if (!msg.final && this.closedPolls.has(msg.poll_id)) return; // stale: closed here already
    if (msg.final) this.closedPolls.add(msg.poll_id);
    this.asked = null;
    this.poll = msg;
    this.renderLive();
  }

  /** Back after a dropped connection: a question that may not have reached the server is asked again. */
  rejoined() {
    const asked = this.asked;
    if (!asked) return;
    // The form comes back filled in.
    this.asked = null;
    if (!this.poll) {
      this.question.value = asked.question;
      this.options.replaceChildren();
      for (const o of asked.options) this.addOption(o);
      while (this.options.children.length < POLL_MIN) this.addOption();
    }
    this.renderLive();
  }

  /**
   * An error about the poll; true when shown here.
   * @param {ErrorOut} msg
   */
  takeError(msg) {
    if (this.asked && msg.code === "bad_message") {
      this.asked = null;
      this.renderLive();
      this.problem(`投票没有发出 The poll was not sent: ${msg.message}`);
      return true;
    }
    if (msg.code === "bad_state" && this.poll && !this.poll.final && this.closedPolls.has(this.poll.poll_id)) {
      this.poll = { ...this.poll, final: true }; // the server had closed it already
      this.renderLive();
      return true;
    }
    return false;
  }

  /**
   * The buttons, with the page.
   * @param {boolean} inClass
   * @param {number} students
   */
  render(inClass, students) {
    this.askBtn.disabled = !inClass;
    const closable = inClass && !!this.poll && !this.poll.final;
    this.closeBtn.disabled = !closable;
    this.closeShowBtn.disabled = !closable;
    $("poll-students").textContent = String(students);
  }

  renderLive() {
    const poll = this.poll;
    const asked = this.asked;
    this.form.hidden = !!(poll || asked);
    this.live.hidden = !(poll || asked);
    const shown = poll || (asked && { question: asked.question, options: asked.options, counts: [], answered: 0, final: false });
    if (!shown) return;
    $("poll-live-question").textContent = shown.question;
    renderBars($("poll-bars"), shown);
    $("poll-answered").textContent = String(shown.answered);
    const label = $("poll-state-label");
    label.textContent = !poll ? "正在发起… Opening…" : poll.final ? "已结束 Closed" : "进行中 Open";
    label.dataset.state = !poll ? "opening" : poll.final ? "closed" : "open";
    $("poll-open-buttons").hidden = !!(poll && poll.final);
    $("poll-of").hidden = !!(poll && poll.final);
    $("poll-done-buttons").hidden = !(poll && poll.final);
  }
}
