// @ts-check
// Sky Classroom — raised hands: the student's "Raise hand" button (`hand {raised}`), and the
// teacher's list of raised hands (`hands`), earliest first, each with its stage controls.

import { $, h, clock, button } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").HandOut} HandOut */

/** The student's button (#hand) and its note (#hand-note). */
export class HandButton {
  /**
   * @param {Signaling} signaling
   * @param {() => void} render
   */
  constructor(signaling, render) {
    this.signaling = signaling;
    this.render = render;
    this.raised = false;
    this.button = button("hand");
    this.note = $("hand-note");
    this.button.addEventListener("click", () => this.toggle());
  }

  toggle() {
    const raised = !this.raised;
    if (this.signaling.send({ type: "hand", raised })) this.raised = raised;
    this.render();
  }

  /**
   * @param {boolean} student the page's participant is a student (or not known yet)
   * @param {boolean} inClass
   */
  show(student, inClass) {
    const btn = this.button;
    btn.hidden = !student;
    btn.disabled = !inClass;
    btn.setAttribute("aria-pressed", String(this.raised));
    const label = this.raised ? "✋ 放下手 Lower hand" : "✋ 举手 Raise hand";
    if (btn.textContent !== label) btn.textContent = label;
    btn.classList.toggle("raised", this.raised);
    this.note.hidden = !(this.raised && inClass);
  }
}

/** The teacher's list (#hands, #hands-count, #hands-empty). */
export class HandsList {
  /** @param {(participantId: string) => HTMLElement} controls the stage controls beside a hand */
  constructor(controls) {
    this.controls = controls;
    /** @type {HandOut[]} hands.raised, earliest first */
    this.hands = [];
    this.list = $("hands");
    this.count = $("hands-count");
    this.empty = $("hands-empty");
  }

  /** @param {HandOut[]} raised */
  take(raised) {
    this.hands = Array.isArray(raised) ? raised : [];
    this.render();
  }

  /** @param {string} participantId */
  find(participantId) {
    return this.hands.find((e) => e.participant_id === participantId);
  }

  render() {
    this.list.replaceChildren(
      ...this.hands.map((hand, i) =>
        h(
          "li",
          { class: "hand-row", dataset: { id: hand.participant_id } },
          h("span", { class: "hand-order", text: `${i + 1}.` }),
          h("span", { class: "hand-name", text: hand.name }),
          h("time", { class: "hand-time", text: clock(hand.at) }),
          this.controls(hand.participant_id),
        ),
      ),
    );
    this.count.textContent = String(this.hands.length);
    this.count.dataset.n = String(this.hands.length);
    this.empty.hidden = this.hands.length > 0;
  }
}
