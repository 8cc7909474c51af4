// @ts-check
// Sky Classroom — the teacher's class list (`roster`): who is in the room, their hand, who is
// away for a moment, the stage controls, and "Remove" (`remove`).

import { $, h, ROLE_LABELS } from "./dom.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").RosterEntry} RosterEntry */
/** @typedef {import("./protocol").Roster} RosterMessage */

/**
 * @typedef {HTMLLIElement & {parts: {name: HTMLElement, role: HTMLElement, hand: HTMLElement,
 *   away: HTMLElement, remove: HTMLButtonElement}}} Row
 */

/**
 * @typedef {object} RosterHooks
 * @property {(participantId: string) => HTMLElement} controls the stage controls beside a student
 * @property {(participantId: string) => void} left the participant is no longer listed
 * @property {() => boolean} inClass
 */

export class ClassList {
  /**
   * @param {Signaling} signaling
   * @param {RosterHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    /** @type {RosterEntry[]} roster.participants */
    this.roster = [];
    this.total = 0;
    /** @type {Set<string>} participant ids with a `remove` sent */
    this.removing = new Set();
    /** @type {Map<string, Row>} participant_id → <li> */
    this.rows = new Map();
    this.list = $("roster");
    this.countEl = $("roster-count");
    this.totalEl = $("roster-total");
  }

  /** @param {RosterMessage} msg */
  take(msg) {
    this.roster = Array.isArray(msg.participants) ? msg.participants : [];
    this.total = Number(msg.total) || this.roster.length;
    this.render();
  }

  /** @param {string} participantId */
  find(participantId) {
    return this.roster.find((e) => e.participant_id === participantId);
  }

  /**
   * @param {RosterEntry} entry
   * @returns {Row}
   */
  row(entry) {
    const name = h("span", { class: "r-name" });
    const role = h("span", { class: "r-role" });
    const hand = h("span", { class: "r-hand", title: "举手 Hand raised", text: "✋" });
    const away = h("span", { class: "r-away", text: "暂时离开 Away" });
    const remove = h("button", { type: "button", class: "btn btn-small btn-plain r-remove", text: "移出 Remove" });
    remove.addEventListener("click", () => this.remove(entry.participant_id));
    const stage = entry.role === "student" ? this.hooks.controls(entry.participant_id) : null;
    const li = h("li", { class: "roster-row", dataset: { id: entry.participant_id } }, hand, name, role, away, stage, remove);
    return Object.assign(li, { parts: { name, role, hand, away, remove } });
  }

  render() {
    const seen = new Set();
    const inClass = this.hooks.inClass();
    let i = 0;
    for (const entry of this.roster) {
      seen.add(entry.participant_id);
      let row = this.rows.get(entry.participant_id);
      if (!row) {
        row = this.row(entry);
        this.rows.set(entry.participant_id, row);
      }
      const { name, role, hand, away, remove } = row.parts;
      if (name.textContent !== entry.name) name.textContent = entry.name;
      role.textContent = ROLE_LABELS[entry.role] || entry.role;
      hand.dataset.on = String(!!entry.hand);
      away.hidden = !entry.away;
      row.classList.toggle("away", !!entry.away);
      row.classList.toggle("hand", !!entry.hand);
      row.dataset.role = entry.role;
      row.dataset.name = entry.name;
      remove.hidden = entry.role !== "student";
      remove.disabled = !inClass || this.removing.has(entry.participant_id);
      if (this.list.children[i] !== row) this.list.insertBefore(row, this.list.children[i] || null);
      i += 1;
    }
    for (const [id, row] of this.rows) {
      if (seen.has(id)) continue;
      row.remove();
      this.rows.delete(id);
      this.removing.delete(id);
      this.hooks.left(id);
    }
    this.countEl.textContent = String(this.total);
    const cut = this.total > this.roster.length;
    this.totalEl.hidden = !cut;
    if (cut) this.totalEl.textContent = `只显示前 ${this.roster.length} 人，共 ${this.total} 人 Showing ${this.roster.length} of ${this.total}`;
  }

  /** The "Remove" buttons' state only (between roster messages). @param {boolean} inClass */
  renderButtons(inClass) {
    for (const row of this.rows.values()) {
      row.parts.remove.disabled = !inClass || this.removing.has(row.dataset.id || "");
    }
  }

  /** @param {string} participantId */
  remove(participantId) {
    const entry = this.find(participantId);
    if (!entry) return;
    const ok = window.confirm(
      `把 ${entry.name} 移出本节课？移出后本节课不能再进入。\nRemove ${entry.name} from this lesson? They cannot come back to it.`,
    );
    if (!ok) return;
    if (this.signaling.send({ type: "remove", participant_id: participantId })) {
      this.removing.add(participantId);
      this.render();
    }
  }
}
