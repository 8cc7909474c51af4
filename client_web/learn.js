// Sky Classroom — student page (/learn?room=R&token=T).
//
// The server offers one subscription (audio + video, recvonly here) right after `joined`
// and keeps it for the whole session; the teacher starting and stopping only starts and
// stops forwarding, announced by `broadcast {live}`.

import {
  $,
  pageParams,
  showState,
  showError,
  Signaling,
  newPeerConnection,
  trickleIce,
  poll,
  findStat,
  hasWebRTC,
  expose,
} from "/static/skyclass.js";

const FRAME_FRESH_MS = 2000; // "live" needs a decoded frame at most this long ago

const video = $("video");
const overlay = $("waiting");
const overlayText = $("waiting-text");
const unmuteBtn = $("unmute");
const roomEl = $("room");
const nameEl = $("name");

const remoteStream = new MediaStream();

const page = {
  signaling: null,
  role: null,
  live: false, // the server's broadcast flag
  pc: null, // the subscribe connection
  trickle: null,
  media: "new", // subscribe pc connectionState
  autoplayBlocked: false,
  // cached by the stats poller
  framesDecoded: 0,
  lastFrameAt: -Infinity, // performance.now() of the last increase of framesDecoded
  bytesReceived: 0,
  audioPacketsReceived: 0,
  firstFrameMs: null, // ms from navigation start to the first video frame shown
};

function pageState() {
  const s = page.signaling;
  if (!s) return "error";
  if (s.state === "error" || s.state === "closed" || s.state === "connecting") return s.state;
  if (page.pc && page.media === "connected") return "connected";
  return "joined";
}

function source() {
  const fresh = performance.now() - page.lastFrameAt < FRAME_FRESH_MS;
  return page.live && fresh && video.videoWidth > 0 ? "live" : "none";
}

function stats() {
  return {
    state: pageState(),
    role: page.role,
    source: source(),
    live: page.live,
    media: page.media,
    framesDecoded: page.framesDecoded,
    bytesReceived: page.bytesReceived,
    audioPacketsReceived: page.audioPacketsReceived,
    videoWidth: video.videoWidth,
    videoHeight: video.videoHeight,
    muted: video.muted,
    firstFrameMs: page.firstFrameMs,
  };
}

expose({ stats });

function render() {
  const state = pageState();
  showState(state);
  const src = source();
  overlay.hidden = src === "live";
  let text;
  if (state === "error" || state === "closed") text = "未连接 Not connected";
  else if (!page.live) text = "等待老师开始直播 Waiting for the teacher to start…";
  else if (performance.now() - page.lastFrameAt < FRAME_FRESH_MS || page.framesDecoded === 0)
    text = "老师已开始直播，正在载入画面… The teacher is live — loading the video…";
  else text = "画面暂时中断，正在恢复… The video paused — reconnecting…";
  if (overlayText.textContent !== text) overlayText.textContent = text;
  overlay.dataset.live = String(page.live);
  unmuteBtn.hidden = !(page.autoplayBlocked && video.muted);
}

// --- playback ------------------------------------------------------------------------------

// Time from navigation start to the first video frame shown (measured, for tests and logs).
function watchFirstFrame() {
  const rvfc = "requestVideoFrameCallback" in video;
  const mark = () => {
    if (page.firstFrameMs !== null) return;
    if (video.videoWidth > 0) {
      page.firstFrameMs = Math.round(performance.now());
      console.info(`skyclass: first frame after ${page.firstFrameMs} ms`);
    } else if (rvfc) {
      video.requestVideoFrameCallback(mark);
    }
  };
  if (rvfc) video.requestVideoFrameCallback(mark);
  else video.addEventListener("loadeddata", mark);
}
watchFirstFrame();
video.addEventListener("resize", render);

let playing = false;

async function startPlayback() {
  if (playing) return;
  playing = true;
  video.muted = false;
  try {
    await video.play();
    page.autoplayBlocked = false;
  } catch (e) {
    if (e.name === "NotAllowedError") {
      // Autoplay with sound is blocked: play muted and offer a button.
      page.autoplayBlocked = true;
      video.muted = true;
      video.play().catch((e2) => console.warn("skyclass: muted play", e2));
    } else {
      console.warn("skyclass: play", e);
      playing = false;
    }
  }
  render();
}

unmuteBtn.addEventListener("click", () => {
  video.muted = false;
  video.play().catch(() => {});
  page.autoplayBlocked = false;
  render();
});

// --- subscription --------------------------------------------------------------------------

function ensurePc() {
  if (page.pc && page.pc.signalingState !== "closed") return page.pc;
  const pc = newPeerConnection();
  page.pc = pc;
  page.media = pc.connectionState;
  page.trickle = trickleIce(pc, page.signaling, "subscribe");
  pc.addEventListener("track", (ev) => {
    const old = remoteStream.getTracks().filter((t) => t.kind === ev.track.kind && t !== ev.track);
    for (const t of old) remoteStream.removeTrack(t);
    if (!remoteStream.getTracks().includes(ev.track)) remoteStream.addTrack(ev.track);
    if (video.srcObject !== remoteStream) video.srcObject = remoteStream;
    startPlayback();
  });
  pc.addEventListener("connectionstatechange", () => {
    if (page.pc !== pc) return;
    page.media = pc.connectionState;
    if (pc.connectionState === "failed") {
      showError({ code: "media_failed", message: "请刷新页面 Please reload the page.", fatal: true });
    }
    render();
  });
  return pc;
}

async function onOffer(msg) {
  if (msg.target !== "subscribe") return;
  const pc = ensurePc();
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    page.signaling.send({ type: "answer", target: "subscribe", sdp: pc.localDescription.sdp });
    page.trickle.ready();
  } catch (e) {
    console.error("skyclass: subscribe", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
  }
  render();
}

// --- signaling -----------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      page.role = msg.role;
      page.live = !!msg.live;
      roomEl.textContent = msg.room;
      nameEl.textContent = msg.name || "";
      if (msg.role === "teacher") {
        const q = new URLSearchParams(location.search);
        showError({ code: "wrong_page", message: `这是老师链接，请打开 This is a teacher link; open /teach?${q}`, fatal: false });
      }
      break;
    case "offer":
      onOffer(msg);
      break;
    case "broadcast":
      page.live = !!msg.live;
      break;
    case "ice":
      if (msg.target === "subscribe" && page.pc && msg.candidate) {
        page.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      }
      break;
  }
  render();
}

function onSignalingChange() {
  const s = page.signaling.state;
  if ((s === "closed" || s === "error") && page.pc) {
    page.pc.close();
    page.media = "closed";
    page.live = false;
  }
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  const pc = page.pc;
  if (pc && pc.signalingState !== "closed") {
    const report = await pc.getStats();
    const v = findStat(report, "inbound-rtp", "video");
    const a = findStat(report, "inbound-rtp", "audio");
    if (v) {
      const frames = v.framesDecoded || 0;
      if (frames > page.framesDecoded) page.lastFrameAt = performance.now();
      page.framesDecoded = frames;
      page.bytesReceived = v.bytesReceived || 0;
    }
    if (a) page.audioPacketsReceived = a.packetsReceived || 0;
  }
  render();
});

// --- start ---------------------------------------------------------------------------------

function main() {
  const { room, token } = pageParams();
  page.signaling = new Signaling({ room, token, onMessage, onChange: onSignalingChange });
  roomEl.textContent = room || "—";
  if (!hasWebRTC()) {
    showError({ code: "no_webrtc", message: "", fatal: true });
    page.signaling.state = "error";
    render();
    return;
  }
  if (!room || !token) {
    showError({ code: "no_params", message: "/learn?room=…&token=…", fatal: true });
    page.signaling.state = "error";
    render();
    return;
  }
  render();
  page.signaling.start();
}

main();
