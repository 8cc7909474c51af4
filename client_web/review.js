// @ts-check
// Sky Classroom — the teaching researchers' review (教研员审核, /review?token=T): lessons waiting
// for review, each with its player and two buttons; a rejection needs a reason the teacher reads.

import { $, h, expose } from "./dom.js";
import { api, lessonItem, pagePlayer, play, showProblem } from "./lessons.js";

/** @typedef {import("./lessons.js").Lesson} Lesson */

const page = { pending: 0, decided: /** @type {Record<string, string>} */ ({}), error: /** @type {string | null} */ (null) };
const player = pagePlayer();

/** @param {unknown} e */
const showError = (e) => showProblem(page, e);

/**
 * @param {Lesson} lesson
 * @param {"approve" | "reject"} decision
 * @param {HTMLInputElement} reason
 */
async function decide(lesson, decision, reason) {
  try {
    await api(`/api/lessons/${encodeURIComponent(lesson.id)}/review`, {
      method: "POST",
      body: { decision, reason: reason.value.trim() },
    });
    page.decided[lesson.id] = decision;
    await refresh();
  } catch (e) {
    showError(e);
  }
}

/** @param {Lesson} lesson */
function reviewItem(lesson) {
  const reason = h("input", { class: "reason-input", placeholder: "原因（退回时必填） Reason (needed to reject)", maxlength: "2000" });
  const approve = h("button", { class: "btn approve", type: "button", text: "通过 Approve", onclick: () => decide(lesson, "approve", reason) });
  const reject = h("button", { class: "btn reject", type: "button", text: "退回 Reject", onclick: () => decide(lesson, "reject", reason) });
  return lessonItem(lesson, (l) => play(l, player), h("div", { class: "review-actions" }, reason, approve, reject));
}

async function refresh() {
  /** @type {Lesson[]} */
  const pending = await api("/api/lessons?status=pending");
  page.pending = pending.length;
  $("pending").replaceChildren(...pending.map(reviewItem));
  $("empty").hidden = pending.length > 0;
}

expose({ stats: () => ({ ...page }) });
refresh().catch(showError);
