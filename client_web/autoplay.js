// @ts-check
// Sky Classroom — playing with sound where the browser allows it: when autoplay with sound is
// blocked, the student page plays muted and offers a "Click to unmute" button (#unmute).

export class Autoplay {
  /** @param {() => void} render */
  constructor(render) {
    this.render = render;
    this.blocked = false; // the browser wants a click before it plays sound
  }

  /**
   * Play `el` with sound; when autoplay with sound is blocked, play it muted (and offer the
   * button). Resolves true once it plays, false when it did not (or was paused meanwhile by a switch).
   * @param {HTMLMediaElement} el
   */
  async play(el) {
    el.muted = this.blocked;
    try {
      await el.play();
      this.render();
      return true;
    } catch (e) {
      const err = /** @type {Error} */ (e);
      if (err.name === "NotAllowedError" && !el.muted) {
        this.blocked = true;
        el.muted = true;
        try {
          await el.play();
          this.render();
          return true;
        } catch (e2) {
          if (/** @type {Error} */ (e2).name !== "AbortError") console.warn("skyclass: muted play", e2);
        }
      } else if (err.name !== "AbortError") {
        console.warn("skyclass: play", e);
      }
      this.render();
      return false;
    }
  }
}
