// @ts-check
// Sky Classroom — what the student page plays in its main place (#main-stage).
//
// `joined.lesson` is the room's timetable slot now (null when it has none):
// - "recorded": the slot's recording plays (looped, with sound), badge "录播 Recorded".
// - "live": the teacher's live video while it flows; while there is no teacher, or the live
//   video freezes, the slot's recording plays instead, and the page switches back as soon as
//   the teacher's frames flow again. The subscription keeps running underneath the recording.
// - null (or a live slot without a recording): live video or the waiting overlay.
//
// The teacher's shared screen takes the main place while its frames flow, the camera then small
// in a corner (live.js has the live side).

import { InStep } from "./instep.js";
import { $, button, video } from "./dom.js";
import { Autoplay } from "./autoplay.js";
import { LiveVideo, FREEZE_MS, FRAME_FRESH_MS } from "./live.js";

/** @typedef {import("./connection.js").Signaling} Signaling */
/** @typedef {import("./protocol").Lesson} Lesson */
/** @typedef {import("./protocol").Joined} Joined */
/** @typedef {"live" | "recorded"} Shown */
/** @typedef {{from: string, to: string, reason: string | null, ms: number, decidedMs: number, atMs: number}} Switch */

/** @type {Record<string, string>} */
const NOTE_TEXT = {
  recorded_slot: "录播课 Recorded lesson",
  no_teacher: "老师暂未直播，正在播放录播课 The teacher is not live — playing the recorded lesson",
  frozen: "直播画面中断，先播放录播课 The live video stalled — playing the recorded lesson meanwhile",
};

// What the page says when the server sends this student a lower layer of the teacher's camera.
/** @type {Record<string, string>} */
const QUALITY_TEXT = {
  low: "网络较慢，已切换为流畅画质 Slow network — lower video quality",
  still: "网络很差，保留声音，画面每几秒更新 Poor network — sound continues, the picture updates every few seconds",
};

/** @type {Record<string, string>} */
const ENDED_TEXT = {
  removed: "您已被老师移出本节课 You were removed from this lesson",
  lesson_ended: "本节课已结束 The lesson has ended",
};

/**
 * @typedef {object} PlayerHooks
 * @property {() => void} render
 * @property {() => HTMLVideoElement | null} stageVideo the classmate on stage, when there is one (the unmute button serves it too)
 */

export class Player {
  /**
   * @param {Signaling} signaling
   * @param {PlayerHooks} hooks
   */
  constructor(signaling, hooks) {
    this.signaling = signaling;
    this.hooks = hooks;
    this.autoplay = new Autoplay(hooks.render);
    this.live = new LiveVideo(signaling, this.autoplay, { recorded: () => this.active === "recorded", render: hooks.render });
    this.video = this.live.video; // the live video (WebRTC or HLS)
    this.rec = video("recorded"); // the slot's recording
    this.inStep = new InStep(this.rec, hooks.render); // a recorded slot: the class watches together
    this.overlay = $("waiting");
    this.overlayText = $("waiting-text");
    this.unmuteBtn = button("unmute");
    this.badge = $("recorded-badge");
    this.note = $("recorded-note");
    this.qualityNote = $("quality-note");
    this.lessonEl = $("lesson");
    this.stageBox = $("main-stage");
    /** @type {Lesson | null} joined.lesson */
    this.lesson = null;
    /** @type {import("./protocol").NextLesson | null} no slot now: the next one today */
    this.nextLesson = null;
    /** @type {number | null} performance.now() of the first `joined` */
    this.joinedAt = null;
    this.recordingFailed = false; // the recording could not be loaded or decoded
    /** @type {Shown} which element is shown: the live video (or the waiting overlay), or the recording */
    this.active = "live";
    this.recordedSince = -Infinity; // performance.now() of the last switch to the recording
    this.switches = 0;
    /** @type {Switch | null} */
    this.lastSwitch = null;
    /** @type {number | null} ms from navigation start to the first video frame shown (live or recorded) */
    this.firstFrameMs = null;
    /** @type {number | null} the same for the live video only */
    this.firstLiveFrameMs = null;
    this.watchFirstFrame(this.video, true);
    this.watchFirstFrame(this.rec, false);
    for (const ev of ["playing", "pause", "waiting", "resize"]) this.rec.addEventListener(ev, hooks.render);
    this.rec.addEventListener("error", () => {
      const err = this.rec.error;
      console.warn("skyclass: the recording cannot be played", err && err.code, err && err.message);
      this.recordingFailed = true;
      this.decide();
      hooks.render();
    });
    this.unmuteBtn.addEventListener("click", () => {
      // A click lets this page play sound from now on, the other element included.
      this.autoplay.blocked = false;
      const el = this.shown();
      el.muted = false;
      el.play().catch(() => {});
      const stage = hooks.stageVideo();
      if (stage && stage.srcObject) {
        stage.muted = false;
        stage.play().catch(() => {});
      }
      hooks.render();
    });
  }

  /**
   * `joined`: the timetable slot, the live flag, HLS or not.
   * @param {Joined} msg
   */
  joined(msg) {
    const first = this.joinedAt === null;
    if (first) this.joinedAt = performance.now();
    this.live.joined(msg, first);
    this.lesson = msg.lesson && typeof msg.lesson === "object" ? msg.lesson : null;
    this.nextLesson = msg.next_lesson || null;
    this.inStep.joined(this.lesson, msg.server_time || 0);
    this.showLesson();
    this.loadRecording();
  }

  recording() {
    const r = this.lesson && this.lesson.recording;
    return r && r.url ? r : null;
  }

  /** The slot has a recording the page can fall back to. */
  hasRecording() {
    return !!this.recording() && !this.recordingFailed;
  }

  recordedPlaying() {
    const rec = this.rec;
    return !rec.paused && !rec.ended && rec.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && !this.recordingFailed;
  }

  /** @returns {"live" | "hls" | "recorded" | "none"} */
  source() {
    if (this.active === "recorded") return this.recordedPlaying() ? "recorded" : "none";
    if (!this.live.fresh()) return "none";
    return this.live.hls ? "hls" : "live";
  }

  shown() {
    return this.active === "recorded" ? this.rec : this.video;
  }

  recordedFrames() {
    if (typeof this.rec.getVideoPlaybackQuality !== "function") return 0;
    return this.rec.getVideoPlaybackQuality().totalVideoFrames;
  }

  /** The teacher's shared screen takes the main place: its frames flow, and the live video shows. */
  screenShown() {
    return this.active === "live" && this.live.screenFlowing();
  }

  /**
   * Which element should show now, and why: [target, reason, time of the cause].
   * The time of the cause is performance.now() of the broadcast message (or `joined`), of the
   * last frame before a freeze, or of the frames resuming after one.
   * @param {number} now
   * @returns {[Shown, string | null, number]}
   */
  wanted(now) {
    const live = this.live;
    const lesson = this.lesson;
    if (!lesson || !this.hasRecording()) return ["live", "no_recording", now];
    if (lesson.mode === "recorded") return ["recorded", "recorded_slot", this.joinedAt ?? now];
    if (lesson.mode !== "live") return ["live", "no_slot", now];
    if (!live.live) return ["recorded", "no_teacher", live.liveEndedAt];
    if (this.active === "recorded") {
      // Back to live once the teacher's frames flow again: a new frame since the broadcast began,
      // and a recent one.
      const flowing = live.lastFrameAt > live.liveSince && now - live.lastFrameAt < FREEZE_MS && this.video.videoWidth > 0;
      if (!flowing) return ["recorded", null, now];
      if (live.liveSince > this.recordedSince) return ["live", "broadcast", live.liveSince];
      return ["live", "frames_resumed", Math.max(live.framesResumedAt, live.liveSince)];
    }
    // Showing live: fall back when no frame came for FREEZE_MS (right after joining, once the
    // subscription had JOIN_GRACE_MS to bring a first frame).
    const since = Math.max(live.lastFrameAt, live.liveSince);
    const started = live.lastFrameAt > live.liveSince || now >= live.graceUntil;
    if (started && now - since >= FREEZE_MS) return ["recorded", "frozen", since];
    return ["live", null, now];
  }

  decide() {
    const [target, reason, causeAt] = this.wanted(performance.now());
    if (target !== this.active) this.switchTo(target, reason, causeAt);
  }

  /**
   * Record a switch: `ms` from its cause to the new source playing, `decidedMs` to the decision.
   * @param {string} from
   * @param {string} to
   * @param {string | null} reason
   * @param {number} causeAt
   * @param {number} decidedAt
   */
  noteSwitch(from, to, reason, causeAt, decidedAt) {
    const now = performance.now();
    const ms = Math.max(0, Math.round(now - causeAt));
    const decidedMs = Math.max(0, Math.round(decidedAt - causeAt));
    this.switches += 1;
    this.lastSwitch = { from, to, reason, ms, decidedMs, atMs: Math.round(now) };
    console.info(`skyclass: ${from} → ${to} (${reason}) in ${ms} ms (decided after ${decidedMs} ms)`);
  }

  /**
   * @param {Shown} target
   * @param {string | null} reason
   * @param {number} causeAt
   */
  switchTo(target, reason, causeAt) {
    const decidedAt = performance.now();
    const from = this.active;
    this.active = target;
    const rec = this.rec;
    if (target === "recorded" && this.lesson && this.lesson.mode === "recorded") this.inStep.start();
    else this.inStep.stop();
    if (target === "recorded") {
      this.recordedSince = performance.now();
      this.video.muted = true; // the live sound, if any comes, stays off under the recording
      rec.hidden = false;
      const switchedFrom = this.switches === 0 && from === "live" && this.live.framesDecoded === 0 ? "none" : from;
      this.autoplay.play(rec).then((ok) => {
        if (!ok || this.active !== "recorded") return;
        this.noteSwitch(switchedFrom, "recorded", reason, causeAt, decidedAt);
        this.hooks.render();
      });
    } else {
      rec.pause();
      rec.hidden = true;
      // The live video has been playing (muted) underneath; give it its sound back.
      if (this.video.srcObject) this.autoplay.play(this.video);
      // A recording that failed is dropped, not switched away from: nothing to time.
      if (reason !== "no_recording") this.noteSwitch(from, "live", reason, causeAt, decidedAt);
    }
    this.hooks.render();
  }

  /**
   * The main place: the overlay and its words, the badges and notes, the unmute button, the screen.
   * @param {string} state the page's state (pageState())
   * @param {boolean} stageMuted someone is on stage and their tile plays muted
   */
  render(state, stageMuted) {
    const live = this.live;
    const src = this.source();
    this.overlay.hidden = src !== "none";
    let text;
    if (this.active === "recorded" && this.inStep.over) {
      text = "本节课已结束 The lesson is over";
    } else if (this.active === "recorded") {
      text = this.recordingFailed ? "录播课无法播放 The recorded lesson cannot be played." : "正在载入录播课… Loading the recorded lesson…";
    } else if (state === "error" || state === "closed") text = ENDED_TEXT[this.signaling.ended || ""] || "未连接 Not connected";
    else if (state === "reconnecting") text = "正在重新连接… Reconnecting…";
    else if (!live.live && this.recordingFailed)
      text = "录播课无法播放，等待老师开始直播 The recorded lesson cannot be played — waiting for the teacher…";
    else if (!live.live && !this.lesson && this.nextLesson) text = countdown(this.nextLesson, this.inStep);
    else if (!live.live) text = "等待老师开始直播 Waiting for the teacher to start…";
    else if (performance.now() - live.lastFrameAt < FRAME_FRESH_MS || live.framesDecoded === 0)
      text = "老师已开始直播，正在载入画面… The teacher is live — loading the video…";
    else text = "画面暂时中断，正在恢复… The video paused — reconnecting…";
    if (this.overlayText.textContent !== text) this.overlayText.textContent = text;
    this.overlay.dataset.live = String(live.live);
    this.overlay.classList.toggle("stopped", state === "error" || state === "closed");

    this.badge.hidden = src !== "recorded";
    let noteText = "";
    if (src === "recorded" && this.lesson) {
      if (this.lesson.mode === "recorded") noteText = [NOTE_TEXT.recorded_slot, this.lesson.subject].filter(Boolean).join(" · ");
      else noteText = live.live ? NOTE_TEXT.frozen : NOTE_TEXT.no_teacher;
    }
    this.note.hidden = !noteText;
    if (this.note.textContent !== noteText) this.note.textContent = noteText;
    const qualityText = src === "live" ? QUALITY_TEXT[live.layer] || "" : "";
    this.qualityNote.hidden = !qualityText;
    if (this.qualityNote.textContent !== qualityText) this.qualityNote.textContent = qualityText;
    document.body.dataset.source = src;

    this.unmuteBtn.hidden = !(this.autoplay.blocked && (this.shown().muted || stageMuted));
    const sharing = this.screenShown();
    this.stageBox.classList.toggle("sharing", sharing);
    live.screenVideo.hidden = !sharing;
  }

  showLesson() {
    const lesson = this.lesson;
    const el = this.lessonEl;
    if (!lesson) {
      el.hidden = true;
      return;
    }
    const mode = lesson.mode === "recorded" ? "录播 Recorded" : "直播 Live";
    el.textContent = [lesson.class_name, lesson.subject, mode].filter(Boolean).join(" · ");
    el.dataset.mode = lesson.mode;
    el.hidden = false;
  }

  loadRecording() {
    const r = this.recording();
    if (!r) return;
    const url = new URL(r.url, location.href).href;
    if (this.rec.src === url) return;
    this.recordingFailed = false;
    this.rec.src = url;
    this.rec.load(); // preloaded, so that a live slot's fallback starts at once
  }

  /**
   * Time from navigation start to the first video frame shown (measured, for tests and logs).
   * @param {HTMLVideoElement} el
   * @param {boolean} live
   */
  watchFirstFrame(el, live) {
    const rvfc = typeof el.requestVideoFrameCallback === "function";
    const mark = () => {
      if (el.videoWidth > 0) {
        const ms = Math.round(performance.now());
        if (this.firstFrameMs === null) {
          this.firstFrameMs = ms;
          console.info(`skyclass: first frame after ${ms} ms (${live ? "live" : "recorded"})`);
        }
        if (live && this.firstLiveFrameMs === null) this.firstLiveFrameMs = ms;
      } else if (rvfc) {
        el.requestVideoFrameCallback(mark);
      }
    };
    if (rvfc) el.requestVideoFrameCallback(mark);
    else el.addEventListener("loadeddata", mark, { once: true });
  }

  /** What plays, for stats(). */
  stats() {
    const live = this.live;
    const el = this.shown();
    const recorded = this.active === "recorded";
    const r = this.recording();
    return {
      source: this.source(),
      live: live.live,
      hls: live.hlsStats(),
      layer: live.layer,
      layerReason: live.layerReason,
      freezes: live.freezes, // this subscription's video freezes, as the browser counts them
      audioConcealed: live.audioConcealed, // share of the sound the browser had to make up (losses)
      // What plays now: the live video's decoder, or the recording's frames.
      framesDecoded: recorded ? this.recordedFrames() : live.framesDecoded,
      bytesReceived: live.bytesReceived,
      audioPacketsReceived: live.audioPacketsReceived,
      videoWidth: el.videoWidth,
      videoHeight: el.videoHeight,
      muted: el.muted,
      firstFrameMs: this.firstFrameMs,
      firstLiveFrameMs: this.firstLiveFrameMs,
      // The timetable slot and the fallback.
      lesson: this.lesson ? this.lesson.mode : null,
      recording: r ? r.id : null,
      recordedTime: this.rec.currentTime || 0,
      inStep: this.inStep.stats(),
      recordedPaused: this.rec.paused,
      recordedFrames: this.recordedFrames(),
      liveFramesDecoded: live.framesDecoded,
      switches: this.switches,
      lastSwitchMs: this.lastSwitch ? this.lastSwitch.ms : null,
      lastSwitch: this.lastSwitch ? { ...this.lastSwitch } : null,
      screen: this.screenShown() ? { framesDecoded: live.screenFrames, videoWidth: live.screenVideo.videoWidth } : null,
    };
  }
}


/**
 * "下一节 数学 12:30 后开始": the class's next slot today, counted down by the server's clock.
 * @param {{subject: string, starts_at: number}} next
 * @param {InStep} clock
 */
function countdown(next, clock) {
  const left = Math.max(0, Math.round(next.starts_at - (clock.serverAt + (performance.now() - clock.perfAt) / 1000)));
  const mmss = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
  return `下一节 ${next.subject} ${mmss} 后开始 Next: ${next.subject} in ${mmss}`;
}
