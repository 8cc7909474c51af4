// @ts-check
// Sky Classroom — this student's turn on stage (the student page). `invited`: the teacher invites
// us; "Go on stage" publishes the camera and microphone as the teacher publishes a broadcast
// (publish.js: trickled ICE, m-lines named "audio" and "video"); "Leave stage" sends
// `unpublish`. A `stage` naming someone else (or nobody) ends our turn.

import { $, button, video, showError, clearError, shownError } from "./dom.js";
import { Publisher } from "./publish.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./publish.js").Outgoing} Outgoing */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */
/** @typedef {import("./protocol").PublishAnswer} PublishAnswer */
/** @typedef {import("./stage.js").OnStage} OnStage */

const CAMERA = {
  video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 }, facingMode: "user" }, // a phone's front camera
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
};

/**
 * @typedef {object} TurnHooks
 * @property {() => string | null} me our participant id
 * @property {() => void} render
 */

export class StageTurn {
  /**
   * @param {Signaling} signaling
   * @param {TurnHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    this.invitation = false; // `invited` came; the prompt shows
    this.onStage = false; // the server says we are on stage
    /** @type {{stream: MediaStream | null} | null} from "Go on stage" to the end of the turn */
    this.turn = null;
    this.publisher = new Publisher(signaling, {
      tracks: () => this.tracks(),
      onChange: hooks.render,
      onFailed: (why) => {
        if (why === "connection") showError({ code: "media_failed", message: "上台失败 Could not go on stage.", fatal: false });
        if (why === "offer") this.stopPublishing();
        else this.leaveStage();
        hooks.render();
      },
    });
    this.inviteCard = $("invite-card");
    this.goBtn = button("go-on-stage");
    this.declineBtn = button("decline-stage");
    this.meCard = $("me-card");
    this.meStatus = $("me-status");
    this.meMuted = $("me-muted");
    this.selfVideo = video("self-video");
    this.leaveBtn = button("leave-stage");
    this.goBtn.addEventListener("click", () => this.goOnStage());
    this.declineBtn.addEventListener("click", () => this.decline());
    this.leaveBtn.addEventListener("click", () => this.leaveStage());
  }

  /** Our microphone and camera, named as the teacher's are. @returns {Outgoing[] | null} */
  tracks() {
    const stream = this.turn && this.turn.stream;
    if (!stream) return null;
    return [
      ...stream.getAudioTracks().map((track) => ({ track, stream, name: /** @type {const} */ ("audio") })),
      ...stream.getVideoTracks().map((track) => ({ track, stream, name: /** @type {const} */ ("video") })),
    ];
  }

  /** The publication's connection state ("new" until it is made). */
  get media() {
    return this.publisher.pc ? this.publisher.media : "new";
  }

  stats() {
    return {
      invited: this.invitation,
      onStage: this.onStage,
      publishing: !!this.turn,
      publish: this.turn ? { media: this.media, framesEncoded: this.publisher.framesEncoded, answered: this.publisher.answered } : null,
    };
  }

  invited() {
    if (this.turn || this.onStage) return;
    this.invitation = true;
    this.hooks.render();
    requestAnimationFrame(() => this.inviteCard.scrollIntoView({ block: "nearest", behavior: "smooth" }));
    this.goBtn.focus({ preventScroll: true });
  }

  decline() {
    // Nothing to tell the server: the invitation simply lapses.
    this.invitation = false;
    this.hooks.render();
  }

  /** "Go on stage": camera and microphone, published on a peer connection of their own. */
  async goOnStage() {
    if (this.turn || !this.invitation) return;
    this.invitation = false;
    if (shownError() === "invitation_lapsed") clearError();
    /** @type {{stream: MediaStream | null}} */
    const turn = { stream: null };
    this.turn = turn;
    this.hooks.render();
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(CAMERA);
    } catch (e) {
      console.warn("skyclass: getUserMedia", e);
      if (this.turn === turn) this.turn = null;
      const err = /** @type {Error} */ (e);
      showError({ code: "no_camera", message: `${err.name}: ${err.message}`, fatal: false });
      this.hooks.render();
      return;
    }
    if (this.turn !== turn || this.signaling.state !== "joined") {
      for (const t of stream.getTracks()) t.stop();
      if (this.turn === turn) this.turn = null;
      this.hooks.render();
      return;
    }
    turn.stream = stream;
    this.selfVideo.srcObject = stream;
    this.selfVideo.muted = true; // never hear yourself
    this.selfVideo.play().catch(() => {});
    await this.publisher.start();
    this.hooks.render();
  }

  /**
   * The server's answer to our publish: true when it was ours.
   * @param {PublishAnswer} msg
   */
  takeAnswer(msg) {
    return !!this.turn && this.publisher.takeAnswer(msg);
  }

  /** "Leave stage": the server ends the turn and tells everyone. */
  leaveStage() {
    if (this.onStage || (this.turn && this.publisher.answered)) this.signaling.send({ type: "unpublish" });
    this.stopPublishing();
    this.hooks.render();
  }

  /** Stop sending our camera and microphone (the light goes out). */
  stopPublishing() {
    const turn = this.turn;
    this.turn = null;
    this.onStage = false;
    if (!turn) return;
    this.publisher.close();
    if (turn.stream) for (const t of turn.stream.getTracks()) t.stop();
    this.selfVideo.srcObject = null;
  }

  /**
   * Who is on stage now (`stage`).
   * @param {OnStage | null} stage
   */
  stageChanged(stage) {
    if (stage && stage.participant_id === this.hooks.me()) {
      this.onStage = true;
      this.invitation = false;
      return;
    }
    // Someone else, or nobody: our turn (if we had one) is over; the server stopped it already.
    if (this.onStage || (this.turn && this.publisher.answered)) this.stopPublishing();
    this.onStage = false;
    if (stage) this.invitation = false; // someone else went on stage: the invitation lapsed
  }

  /**
   * A non-fatal error about going on stage; true when handled here.
   * @param {ErrorOut} msg
   */
  takeError(msg) {
    if (this.turn && this.publisher.isRefusal(msg)) {
      // Our publish was refused: the teacher withdrew the invitation (or invited someone else).
      console.warn("skyclass: going on stage refused", msg);
      this.stopPublishing();
      showError(msg.code === "forbidden" || msg.code === "bad_state" ? { ...msg, code: "invitation_lapsed" } : msg);
      this.hooks.render();
      return true;
    }
    // A candidate trickled for a stage connection the server does not have (any more).
    return this.publisher.strayIce(msg);
  }

  /** The session is over: no turn, no invitation. */
  end() {
    this.stopPublishing();
    this.invitation = false;
  }

  /**
   * The invitation card, and our own card while on stage.
   * @param {boolean} inClass
   * @param {OnStage | null} stage
   */
  render(inClass, stage) {
    this.inviteCard.hidden = !(this.invitation && !this.turn && inClass);
    this.goBtn.disabled = this.declineBtn.disabled = !inClass;
    this.meCard.hidden = !this.turn && !this.onStage;
    const media = this.turn ? this.media : null;
    let status;
    if (this.onStage && media === "connected") status = "你在台上，全班都能看到、听到你 You are on stage — everyone sees and hears you";
    else if (media === "failed") status = "上台失败 Could not go on stage";
    else if (this.onStage && !this.turn) status = "你在台上 You are on stage";
    else status = "正在上台… Going on stage…";
    if (this.meStatus.textContent !== status) this.meStatus.textContent = status;
    this.meCard.dataset.state = this.onStage ? "on-stage" : "joining";
    this.meMuted.hidden = !(this.onStage && stage && stage.participant_id === this.hooks.me() && stage.muted);
    this.leaveBtn.disabled = !this.turn && !this.onStage;
  }
}
