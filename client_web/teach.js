// Sky Classroom — teacher page (/teach?room=R&token=T).
//
// Shows a muted camera preview; "Start broadcast" publishes camera + microphone to the
// server (the browser offers, the server answers), "Stop broadcast" unpublishes.

import {
  $,
  pageParams,
  showState,
  showError,
  clearError,
  Signaling,
  newPeerConnection,
  trickleIce,
  poll,
  findStat,
  hasWebRTC,
  expose,
} from "/static/skyclass.js";

const preview = $("preview");
const startBtn = $("start");
const stopBtn = $("stop");
const countEl = $("student-count");
const liveBadge = $("live-badge");
const roomEl = $("room");
const nameEl = $("name");
const noCamera = $("no-camera");

const page = {
  signaling: null,
  role: null,
  name: null,
  live: false, // broadcasting now: joined.live, then true once the server answers our publish
  students: 0,
  stream: null, // camera + microphone
  pc: null, // the publish connection
  publishing: false, // between Start and Stop
  awaitingAnswer: false,
  trickle: null,
  media: "new", // publish pc connectionState
  // cached by the stats poller
  framesEncoded: 0,
  lastEncodedAt: 0,
  bytesSent: 0,
};

function pageState() {
  const s = page.signaling;
  if (!s) return "error";
  if (s.state === "error" || s.state === "closed" || s.state === "connecting") return s.state;
  if (page.pc && page.media === "connected") return "connected";
  return "joined";
}

function source() {
  if (page.publishing && page.media === "connected" && performance.now() - page.lastEncodedAt < 2000) return "live";
  if (page.stream && preview.videoWidth > 0) return "preview";
  return "none";
}

function stats() {
  return {
    state: pageState(),
    role: page.role,
    source: source(),
    live: page.live,
    publishing: page.publishing,
    students: page.students,
    media: page.media,
    framesEncoded: page.framesEncoded,
    framesDecoded: 0,
    bytesSent: page.bytesSent,
    videoWidth: preview.videoWidth,
    videoHeight: preview.videoHeight,
  };
}

expose({ stats });

function render() {
  const state = pageState();
  showState(state);
  const joinedAsTeacher = page.role === "teacher" && (state === "joined" || state === "connected");
  startBtn.disabled = !(joinedAsTeacher && page.stream && !page.publishing);
  stopBtn.disabled = !page.publishing;
  liveBadge.hidden = !page.publishing;
  liveBadge.textContent = page.publishing && page.media !== "connected" ? "正在开始… Starting…" : "直播中 LIVE";
  liveBadge.classList.toggle("pending", page.publishing && page.media !== "connected");
  countEl.textContent = String(page.students);
  document.body.classList.toggle("publishing", page.publishing);
}

// --- camera --------------------------------------------------------------------------------

async function openCamera() {
  noCamera.hidden = true;
  try {
    page.stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    console.warn("skyclass: getUserMedia", e);
    page.stream = null;
    noCamera.hidden = false;
    showError({ code: "no_camera", message: `${e.name}: ${e.message}`, fatal: false });
    render();
    return;
  }
  if (document.getElementById("error").dataset.code === "no_camera") clearError();
  if (ended()) {
    releaseCamera();
    return;
  }
  preview.srcObject = page.stream;
  preview.muted = true; // never echo the teacher's own voice
  preview.play().catch(() => {});
  render();
}

// --- publishing ----------------------------------------------------------------------------

async function start() {
  if (page.publishing || !page.stream) return;
  clearError();
  page.publishing = true;
  page.awaitingAnswer = true;
  page.media = "new";
  const pc = newPeerConnection();
  page.pc = pc;
  page.trickle = trickleIce(pc, page.signaling, "publish");
  pc.addEventListener("connectionstatechange", () => {
    if (page.pc !== pc) return;
    page.media = pc.connectionState;
    if (pc.connectionState === "failed") {
      showError({ code: "media_failed", message: "请再按一次“开始直播” Press Start broadcast again.", fatal: false });
      stop();
      return;
    }
    render();
  });
  for (const track of page.stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [page.stream] });
  }
  render();
  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (page.pc !== pc) return; // stopped meanwhile
    if (!page.signaling.send({ type: "publish", sdp: pc.localDescription.sdp })) throw new Error("not connected");
    page.trickle.ready();
  } catch (e) {
    console.error("skyclass: publish", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    teardown();
  }
}

function stop() {
  if (!page.publishing) return;
  page.signaling.send({ type: "unpublish" });
  teardown();
}

function teardown() {
  const pc = page.pc;
  page.pc = null;
  page.trickle = null;
  page.publishing = false;
  page.awaitingAnswer = false;
  page.live = false;
  page.media = "closed";
  page.framesEncoded = 0;
  page.bytesSent = 0;
  if (pc) pc.close();
  render();
}

async function onAnswer(msg) {
  const pc = page.pc;
  if (msg.target !== "publish" || !pc || pc.signalingState !== "have-local-offer") return;
  page.awaitingAnswer = false;
  page.live = true; // the server accepted the broadcast
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  } catch (e) {
    console.error("skyclass: answer", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    stop();
  }
}

// --- signaling -----------------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      page.role = msg.role;
      page.name = msg.name;
      page.live = !!msg.live;
      roomEl.textContent = msg.room;
      nameEl.textContent = msg.name || "";
      if (msg.role !== "teacher") {
        const q = new URLSearchParams(location.search);
        showError({
          code: "wrong_page",
          message: `这是${msg.role}链接，请打开 This is a ${msg.role} link; open /learn?${q}`,
          fatal: false,
        });
      }
      break;
    case "answer":
      onAnswer(msg);
      break;
    case "presence":
      page.students = Number(msg.students) || 0;
      break;
    case "broadcast":
      page.live = !!msg.live;
      break;
    case "ice":
      // The server's candidates are in its SDP; accept a trickled one all the same.
      if (msg.target === "publish" && page.pc && msg.candidate) {
        page.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      }
      break;
    case "error":
      // A refused publish leaves nothing to stop on the server side.
      if (page.awaitingAnswer && ["forbidden", "bad_sdp", "bad_state", "server_error"].includes(msg.code)) teardown();
      break;
  }
  render();
}

function ended() {
  const s = page.signaling.state;
  return s === "closed" || s === "error";
}

/** Turn the camera and microphone off (their light goes out) once the session is over. */
function releaseCamera() {
  if (!page.stream) return;
  for (const t of page.stream.getTracks()) t.stop();
  page.stream = null;
  preview.srcObject = null;
}

function onSignalingChange() {
  if (ended()) {
    if (page.pc) teardown();
    releaseCamera();
  }
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  const pc = page.pc;
  if (!pc) return;
  const report = await pc.getStats();
  if (page.pc !== pc) return;
  const out = findStat(report, "outbound-rtp", "video");
  if (!out) return;
  const frames = out.framesEncoded || 0;
  if (frames > page.framesEncoded) page.lastEncodedAt = performance.now();
  page.framesEncoded = frames;
  page.bytesSent = out.bytesSent || 0;
});

// --- wiring --------------------------------------------------------------------------------

startBtn.addEventListener("click", start);
stopBtn.addEventListener("click", stop);
$("retry-camera").addEventListener("click", openCamera);

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
    showError({ code: "no_params", message: "/teach?room=…&token=…", fatal: true });
    page.signaling.state = "error";
    render();
    return;
  }
  render();
  page.signaling.start();
  if (navigator.mediaDevices?.getUserMedia) openCamera();
  else showError({ code: "no_camera", message: "navigator.mediaDevices is unavailable (HTTPS is required)", fatal: false });
}

main();
