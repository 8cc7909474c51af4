// @ts-check
// Sky Classroom — the student on stage as the others see them: the subscription's
// "stage_audio" and "stage_video" slots play in a tile (#stage-tile), named by `stage`
// (StageView, both pages). The teacher's controls: "Invite on stage" beside a raised hand or a
// student in the class list (`invite`), "Cancel invitation", "Mute"/"Unmute" (`mute`) and
// "End turn" (`end_turn`) (TeacherStage).

import { $, h, button, video } from "./dom.js";
import { replaceTrack } from "./rtc.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").StageOut} StageOut */
/** @typedef {import("./protocol").RosterEntry} RosterEntry */
/** @typedef {import("./protocol").HandOut} HandOut */
/** @typedef {import("./rtc.js").Inbound} Inbound */
/** @typedef {{participant_id: string, name: string, muted: boolean}} OnStage */

export const STAGE_FRESH_MS = 2000; // the stage video shows once a frame came this recently

/** Who is on stage, what their video does, and the tile's common parts. */
export class StageView {
  /** @param {{play: (stage: OnStage) => void}} hooks `play`: the tile's video is paused and someone is on stage */
  constructor(hooks) {
    this.hooks = hooks;
    this.video = video("stage-video");
    this.tile = $("stage-tile");
    this.nameEl = $("stage-name");
    this.mutedEl = $("stage-muted");
    this.waiting = $("stage-waiting");
    this.stream = new MediaStream(); // stage_audio + stage_video of the subscription
    /** @type {OnStage | null} from `stage` */
    this.stage = null;
    this.epoch = 0; // the websocket (signaling.epoch) the last `stage` came on
    this.since = -Infinity; // performance.now() when this student came on stage
    // cached by the stats poller, over the subscriptions so far
    this.frames = 0;
    this.lastFrameAt = -Infinity;
    this.audioPackets = 0;
    this.frameBase = 0;
    this.audioBase = 0;
  }

  /**
   * The `stage` message, as the page keeps it (null: nobody on stage).
   * @param {StageOut} msg
   * @param {number} epoch
   * @returns {OnStage | null}
   */
  take(msg, epoch) {
    this.epoch = epoch;
    const stage = msg.participant_id ? { participant_id: msg.participant_id, name: msg.name || "", muted: !!msg.muted } : null;
    this.set(stage);
    return stage;
  }

  /** @param {OnStage | null} stage */
  set(stage) {
    const before = this.stage ? this.stage.participant_id : null;
    this.stage = stage;
    if (stage && stage.participant_id !== before) this.since = performance.now();
    if (stage && this.video.srcObject && this.video.paused) this.hooks.play(stage);
  }

  /** @param {MediaStreamTrack} track */
  addTrack(track) {
    replaceTrack(this.stream, track);
    if (this.video.srcObject !== this.stream) this.video.srcObject = this.stream;
  }

  /** A new subscription: its counters start from zero, ours go on. */
  rebase() {
    this.frameBase = this.frames;
    this.audioBase = this.audioPackets;
  }

  /** @param {Partial<Record<string, Inbound>>} slots */
  count(slots) {
    const v = slots.stage_video;
    if (v) {
      const frames = this.frameBase + (v.framesDecoded || 0);
      if (frames > this.frames) this.lastFrameAt = performance.now();
      this.frames = frames;
    }
    const a = slots.stage_audio;
    if (a) this.audioPackets = this.audioBase + (a.packetsReceived || 0);
  }

  /** The stage's frames flow: a recent one, since this student came on stage. */
  flowing(now = performance.now()) {
    return this.lastFrameAt > this.since && now - this.lastFrameAt < STAGE_FRESH_MS && this.video.videoWidth > 0;
  }

  /** The student on stage as both pages report it in stats(), or null. */
  stats() {
    if (!this.stage) return null;
    return {
      participant_id: this.stage.participant_id,
      name: this.stage.name,
      muted: this.stage.muted,
      framesDecoded: this.frames,
      videoWidth: this.video.videoWidth,
      audioPacketsReceived: this.audioPackets,
    };
  }
}

/**
 * @typedef {object} TeacherStageHooks
 * @property {(participantId: string) => (RosterEntry | HandOut | undefined)} find a student in the class list or the hands
 * @property {() => boolean} inClass
 * @property {() => void} render
 */

/** The teacher's side: invitations, mute and end turn, and the tile with its buttons. */
export class TeacherStage {
  /**
   * @param {Signaling} signaling
   * @param {TeacherStageHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    this.view = new StageView({ play: () => this.play() });
    /** @type {{participant_id: string, name: string, at: number} | null} invited, not on stage yet */
    this.invited = null;
    this.muting = false; // a `mute` sent, its `stage` not back yet
    this.autoplayBlocked = false;
    this.waitingText = $("stage-waiting-text");
    this.muteBtn = button("stage-mute");
    this.endBtn = button("stage-end");
    this.cancelBtn = button("stage-cancel");
    this.unmuteBtn = button("stage-unmute");
    this.muteBtn.addEventListener("click", () => this.toggleMute());
    this.endBtn.addEventListener("click", () => this.endTurn());
    this.cancelBtn.addEventListener("click", () => this.cancelInvitation());
    this.unmuteBtn.addEventListener("click", () => {
      this.autoplayBlocked = false;
      this.view.video.muted = false;
      this.view.video.play().catch(() => {});
      hooks.render();
    });
    this.view.video.addEventListener("resize", hooks.render);
  }

  /** Play the stage with its sound; muted (with a button) where the browser wants a click first. */
  play() {
    const el = this.view.video;
    el.muted = this.autoplayBlocked;
    el.play().catch((e) => {
      if (e.name !== "NotAllowedError" || el.muted) return;
      this.autoplayBlocked = true;
      el.muted = true;
      el.play().catch(() => {});
      this.hooks.render();
    });
  }

  /**
   * `stage`: on stage now, or the turn (and any invitation) is over.
   * @param {StageOut} msg
   */
  take(msg) {
    this.muting = false;
    this.invited = null;
    this.view.take(msg, this.signaling.epoch);
  }

  /** @param {string} participantId */
  invite(participantId) {
    const entry = this.hooks.find(participantId);
    if (!entry || this.view.stage) return;
    if (this.signaling.send({ type: "invite", participant_id: participantId })) {
      this.invited = { participant_id: participantId, name: entry.name, at: performance.now() };
    }
    this.hooks.render();
  }

  cancelInvitation() {
    // end_turn with nobody on stage withdraws the invitation; nobody is told.
    if (this.invited && this.signaling.send({ type: "end_turn" })) this.invited = null;
    this.hooks.render();
  }

  toggleMute() {
    const stage = this.view.stage;
    if (!stage || this.muting) return;
    if (this.signaling.send({ type: "mute", participant_id: stage.participant_id, muted: !stage.muted })) this.muting = true;
    this.hooks.render();
  }

  endTurn() {
    if (!this.view.stage) return;
    this.signaling.send({ type: "end_turn" });
    this.hooks.render();
  }

  /**
   * Invite / Mute / End turn beside a student in the hands list or the class list.
   * @param {string} participantId
   */
  controls(participantId) {
    const inviteBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-invite", text: "邀请上台 Invite on stage" });
    const cancelBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-cancel", text: "取消邀请 Cancel invitation" });
    const muteBtn = h("button", { type: "button", class: "btn btn-small btn-quiet s-mute", text: "静音 Mute" });
    const endBtn = h("button", { type: "button", class: "btn btn-small s-end", text: "结束发言 End turn" });
    inviteBtn.addEventListener("click", () => this.invite(participantId));
    cancelBtn.addEventListener("click", () => this.cancelInvitation());
    muteBtn.addEventListener("click", () => this.toggleMute());
    endBtn.addEventListener("click", () => this.endTurn());
    const box = h("span", { class: "stage-ctl", dataset: { id: participantId } }, inviteBtn, cancelBtn, muteBtn, endBtn);
    this.updateControls(box, this.hooks.inClass());
    return box;
  }

  /**
   * @param {HTMLElement} box
   * @param {boolean} inClass
   */
  updateControls(box, inClass) {
    const id = box.dataset.id || "";
    const [inviteBtn, cancelBtn, muteBtn, endBtn] = /** @type {HTMLButtonElement[]} */ ([...box.children]);
    const stage = this.view.stage;
    const onStage = !!(stage && stage.participant_id === id);
    const invited = !!(this.invited && this.invited.participant_id === id);
    const entry = this.hooks.find(id);
    inviteBtn.hidden = onStage || invited;
    inviteBtn.disabled = !inClass || !!stage || !!(entry && "away" in entry && entry.away);
    inviteBtn.title = stage ? "请先结束台上学生的发言 End the current turn first" : "";
    cancelBtn.hidden = !invited;
    cancelBtn.disabled = !inClass;
    muteBtn.hidden = !onStage;
    endBtn.hidden = !onStage;
    muteBtn.disabled = endBtn.disabled = !inClass;
    if (stage && onStage) {
      const label = stage.muted ? "取消静音 Unmute" : "静音 Mute";
      if (muteBtn.textContent !== label) muteBtn.textContent = label;
      muteBtn.disabled = !inClass || this.muting;
      muteBtn.setAttribute("aria-pressed", String(stage.muted));
    }
    box.closest("li")?.classList.toggle("on-stage", onStage);
  }

  /** @param {boolean} inClass */
  render(inClass) {
    for (const box of document.querySelectorAll(".stage-ctl")) {
      if (box instanceof HTMLElement) this.updateControls(box, inClass);
    }
    const view = this.view;
    const stage = view.stage;
    const invited = this.invited;
    view.tile.hidden = !stage && !invited;
    view.tile.dataset.state = stage ? "on-stage" : invited ? "invited" : "empty";
    const name = stage ? stage.name : invited ? invited.name : "";
    if (view.nameEl.textContent !== name) view.nameEl.textContent = name;
    view.mutedEl.hidden = !(stage && stage.muted);
    this.muteBtn.hidden = this.endBtn.hidden = !stage;
    this.cancelBtn.hidden = !(!stage && invited);
    this.muteBtn.disabled = !inClass || this.muting;
    this.endBtn.disabled = this.cancelBtn.disabled = !inClass;
    if (stage) {
      const label = stage.muted ? "取消静音 Unmute" : "静音 Mute";
      if (this.muteBtn.textContent !== label) this.muteBtn.textContent = label;
      this.muteBtn.setAttribute("aria-pressed", String(stage.muted));
    }
    view.video.hidden = !stage;
    view.waiting.hidden = !!stage && view.flowing();
    const text = stage ? "正在连接学生的画面… Connecting to the student's video…" : "已邀请，等待学生上台… Invited — waiting for the student…";
    if (this.waitingText.textContent !== text) this.waitingText.textContent = text;
    this.unmuteBtn.hidden = !(stage && this.autoplayBlocked && view.video.muted);
  }
}
