// @ts-check
// Sky Classroom — a recorded slot played in step: the whole class watches one lesson together, at
// the point the slot has reached (a pupil who opens the page 10 minutes late starts 10 minutes
// in), by the server's clock (`joined.server_time`), so that any two pupils stay within a second
// or two. A lesson shorter than its slot ends with "lesson over — watch again"; watching again
// plays from the start, with seeking (点播回看).

import { button } from "./dom.js";

/** @typedef {import("./protocol").Lesson} Lesson */

const DRIFT_S = 1.0; // further than this from the class: seek back into step
const CHECK_MS = 2000;

export class InStep {
  /**
   * @param {HTMLVideoElement} rec the slot's recording
   * @param {() => void} render
   */
  constructor(rec, render) {
    this.rec = rec;
    this.render = render;
    this.watchAgain = button("watch-again");
    /** @type {Lesson | null} */
    this.lesson = null;
    this.serverAt = 0; // the server's clock at `joined` (epoch seconds)…
    this.perfAt = 0; // …and performance.now() then
    this.on = false; // keeping the recording in step now
    this.over = false; // the lesson ended before its slot
    this.again = false; // watching again, from the start, at the pupil's own pace
    this.seeks = 0;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
    rec.addEventListener("ended", () => {
      if (this.on && !this.again) this.finish();
    });
    rec.addEventListener("loadedmetadata", () => this.on && this.keep());
    this.watchAgain.addEventListener("click", () => {
      this.again = true;
      this.over = false;
      this.watchAgain.hidden = true;
      rec.controls = true;
      rec.currentTime = 0;
      rec.play().catch(() => {});
      render();
    });
  }

  /**
   * The slot and the server's clock, from `joined`.
   * @param {Lesson | null} lesson
   * @param {number} serverTime
   */
  joined(lesson, serverTime) {
    this.lesson = lesson;
    this.serverAt = serverTime || Date.now() / 1000;
    this.perfAt = performance.now();
  }

  /** Seconds into the slot now, by the server's clock. */
  position() {
    if (!this.lesson) return 0;
    return this.serverAt + (performance.now() - this.perfAt) / 1000 - this.lesson.starts_at;
  }

  duration() {
    const known = this.rec.duration;
    if (Number.isFinite(known) && known > 0) return known;
    return (this.lesson && this.lesson.recording && this.lesson.recording.duration_s) || Infinity;
  }

  /** The recording shows for a recorded slot: join the class where it is. */
  start() {
    if (this.on) return;
    this.on = true;
    this.rec.loop = false;
    this.keep();
    this.timer = setInterval(() => this.keep(), CHECK_MS);
  }

  stop() {
    this.on = false;
    clearInterval(this.timer);
  }

  keep() {
    if (!this.on || this.again || this.over) return;
    const at = this.position();
    if (at >= this.duration()) {
      this.finish();
      return;
    }
    if (this.rec.readyState >= HTMLMediaElement.HAVE_METADATA && Math.abs(this.rec.currentTime - at) > DRIFT_S) {
      this.rec.currentTime = Math.max(0, at);
      this.seeks += 1;
    }
  }

  finish() {
    this.over = true;
    this.rec.pause();
    this.watchAgain.hidden = false;
    this.render();
  }

  stats() {
    return {
      position: this.on ? this.position() : null,
      over: this.over,
      again: this.again,
      seeks: this.seeks,
      currentTime: this.rec.currentTime || 0,
    };
  }
}
