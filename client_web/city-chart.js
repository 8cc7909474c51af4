// @ts-check
// Sky Classroom — the control room's participation chart: a bar per school (or grade), the share
// of pupils who came and, narrower on top, of teachers, drawn with uPlot (vendor/uPlot.iife.min.js,
// a classic script that sets window.uPlot). Without it the figures beneath the chart still show.

/**
 * @typedef {object} Share
 * @property {string} label
 * @property {number | null} pupils share of the enrolled pupils who came (0..1), null when unknown
 * @property {number | null} teachers share of the teachers expected who came
 */

/** @param {number | null} share */
const percent = (share) => (share === null ? null : Math.round(share * 1000) / 10);

export class ParticipationChart {
  /** @param {HTMLElement} el */
  constructor(el) {
    this.el = el;
    /** @type {import("./globals").UPlotInstance | null} */
    this.plot = null;
    /** @type {string[]} */
    this.labels = [];
  }

  /** @param {Share[]} shares */
  show(shares) {
    const uPlot = window.uPlot;
    if (!uPlot) return;
    const data = [shares.map((_, i) => i), shares.map((s) => percent(s.pupils)), shares.map((s) => percent(s.teachers))];
    const same = this.plot && this.labels.join("\n") === shares.map((s) => s.label).join("\n");
    this.labels = shares.map((s) => s.label);
    if (this.plot && same) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    const labels = this.labels;
    const bars = (/** @type {number} */ size) => uPlot.paths.bars({ size: [size, 60] });
    this.plot = new uPlot(
      {
        width: Math.max(300, this.el.clientWidth || 480),
        height: 240,
        scales: { x: { time: false, range: [-0.5, Math.max(0.5, labels.length - 0.5)] }, y: { range: [0, 100] } },
        axes: [
          {
            space: 30,
            incrs: [1],
            values: (/** @type {unknown} */ _u, /** @type {number[]} */ splits) =>
              splits.map((i) => (Number.isInteger(i) ? labels[i] || "" : "")),
          },
          { values: (/** @type {unknown} */ _u, /** @type {number[]} */ splits) => splits.map((v) => `${v}%`) },
        ],
        series: [
          {},
          { label: "学生 Pupils %", fill: "rgba(31, 111, 235, 0.55)", stroke: "#1f6feb", paths: bars(0.7), points: { show: false } },
          { label: "教师 Teachers %", fill: "rgba(21, 128, 61, 0.85)", stroke: "#15803d", paths: bars(0.3), points: { show: false } },
        ],
      },
      data,
      this.el,
    );
  }
}
