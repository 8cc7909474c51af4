// Sky Classroom — student page (/learn?room=R&token=T).
//
// The server offers one subscription (audio + video, recvonly here) right after `joined`
// and keeps it for the whole session; the teacher starting and stopping only starts and
// stops forwarding, announced by `broadcast {live}`.
//
// `joined.lesson` is the room's timetable slot now (null when it has none):
// - "recorded": the slot's recording plays (looped, with sound), badge "录播 Recorded".
// - "live": the teacher's live video while it flows; while there is no teacher, or the live
//   video freezes, the slot's recording plays instead, and the page switches back as soon as
//   the teacher's frames flow again. The subscription keeps running underneath the recording.
// - null (or a live slot without a recording): live video or the waiting overlay.
//
// The offer's `slots` name its m-lines: "audio" and "video" (the teacher's microphone and camera)
// play in the main video; "screen" (the teacher's shared screen) takes the main place while its
// frames flow, the camera then small in a corner; "stage_audio" and "stage_video" (the student on
// stage, named by `stage`) play in a tile under it.
//
// A viewer the server sends to its HLS tier (`joined.hls`, for a very big room or when the page
// asks with ?delivery=hls) gets no offer: while the teacher is live the main video plays that
// playlist through hls.js, and stats().source says "hls". The fallback to the recording is the same.
//
// `invited`: the teacher invites this student on stage. "Go on stage" publishes the camera and
// microphone on a second peer connection (`publish`, answered by `answer {target: "publish"}`);
// "Leave stage" sends `unpublish`. A `stage` naming someone else (or nobody) ends our turn.
//
// Beside the video: "Raise hand" (`hand`), the teacher's poll (`poll`, `poll_answer`, final
// `poll_results`), and the chat. A dropped connection comes back by itself (skyclass.js); the
// server then offers a fresh subscription, which replaces the old peer connection. `removed`
// and `lesson_ended` end the page's session for good.

import {
  $,
  startPage,
  stageStats,
  showState,
  showError,
  clearError,
  newPeerConnection,
  trickleIce,
  poll,
  findStat,
  expose,
  slotOf,
  inboundBySlot,
  replaceTrack,
  h,
  showNotice,
} from "/static/skyclass.js";
import { HlsPlayer } from "/static/hlsplayer.js";

const FRAME_FRESH_MS = 2000; // "live" needs a decoded frame at most this long ago
const FREEZE_MS = 1500; // live slot: no new frame for this long while live → play the recording
const JOIN_GRACE_MS = 2500; // joining while the teacher is live: time for the subscription to connect
const DECIDE_INTERVAL_MS = 200;
const RESUBSCRIBE_TRIES = 3; // a failed media connection asks for a fresh subscription this often
// The shared screen shows while its frames flow. A still screen still brings a frame about every
// second (the sender repeats frames of an idle screen), so a longer gap means it stopped.
const SCREEN_STALE_MS = 3000;
const STAGE_FRESH_MS = 2000;
const ICE_GATHER_WAIT_MS = 1500; // going on stage: candidates gathered this long go in the offer
const LETTERS = "ABCDEF";

const video = $("video"); // the live video (WebRTC)
const rec = $("recorded"); // the slot's recording
const overlay = $("waiting");
const overlayText = $("waiting-text");
const unmuteBtn = $("unmute");
const badge = $("recorded-badge");
const note = $("recorded-note");
const qualityNote = $("quality-note");
const roomEl = $("room");
const nameEl = $("name");
const lessonEl = $("lesson");
const replayLink = $("replay-link");
const handBtn = $("hand");
const handNote = $("hand-note");
const pollCard = $("poll-card");
const pollChoices = $("poll-choices");
const pollResults = $("poll-results");
const pollNote = $("poll-note");
const stageBox = $("main-stage"); // the teacher's video area
const screenVideo = $("screen");
const stageTile = $("stage-tile");
const stageVideo = $("stage-video");
const stageName = $("stage-name");
const stageMutedEl = $("stage-muted");
const stageWaiting = $("stage-waiting");
const inviteCard = $("invite-card");
const goBtn = $("go-on-stage");
const declineBtn = $("decline-stage");
const meCard = $("me-card");
const meStatus = $("me-status");
const meMuted = $("me-muted");
const selfVideo = $("self-video");
const leaveBtn = $("leave-stage");

const hlsPlayer = new HlsPlayer(video);
const remoteStream = new MediaStream(); // the teacher's microphone and camera
const screenStream = new MediaStream(); // the teacher's shared screen
const stageStream = new MediaStream(); // the student on stage

const page = {
  signaling: null,
  role: null,
  live: false, // the server's broadcast flag
  liveSince: -Infinity, // performance.now() when `live` last became true
  liveEndedAt: -Infinity, // performance.now() when `live` last became false (or joined with false)
  graceUntil: -Infinity, // joined while live: no freeze before this time
  pc: null, // the subscribe connection
  hls: null, // the playlist this viewer watches instead (joined.hls)
  layer: "high", // the teacher's camera as our link gets it (`quality`): high, low, or still pictures
  layerReason: null,
  freezes: { count: 0, seconds: 0 },
  audioConcealed: 0,
  hlsFrames: 0, // the HLS video element's own frame count, last seen
  slots: null, // the offer's slots
  trickle: null,
  media: "new", // subscribe pc connectionState
  autoplayBlocked: false,
  // the timetable slot
  lesson: null, // joined.lesson
  joinedAt: null, // performance.now() of `joined`
  recordingFailed: false, // the recording could not be loaded or decoded
  // which element is shown: "live" (the live video, or the waiting overlay) or "recorded"
  active: "live",
  recordedSince: -Infinity, // performance.now() of the last switch to the recording
  switches: 0,
  lastSwitch: null, // {from, to, reason, ms, atMs}
  // cached by the stats poller
  framesDecoded: 0,
  lastFrameAt: -Infinity, // performance.now() of the last increase of framesDecoded
  framesResumedAt: -Infinity, // performance.now() of the first increase after a pause of FREEZE_MS
  bytesReceived: 0,
  audioPacketsReceived: 0,
  firstFrameMs: null, // ms from navigation start to the first video frame shown (live or recorded)
  firstLiveFrameMs: null, // the same for the live video only
  // counters of the peer connections replaced so far (after a reconnect), so the totals go on
  base: { frames: 0, bytes: 0, audio: 0, screen: 0, stage: 0, stageAudio: 0 },
  // the teacher's shared screen
  screenFrames: 0,
  screenLastFrameAt: -Infinity,
  // the student on stage
  participantId: null,
  stage: null, // {participant_id, name, muted} from `stage`
  stageEpoch: 0, // the websocket (signaling.epoch) the last `stage` came on
  stageSince: -Infinity,
  stageFrames: 0,
  stageLastFrameAt: -Infinity,
  stageAudioPackets: 0,
  // this student on stage
  invitation: false, // `invited` came; the prompt shows
  onStage: false, // the server says we are on stage
  pub: null, // {pc, stream, trickle, sent, trickling, awaiting, media, framesEncoded}: our camera and microphone
  publishIce: 0, // trickled `ice {target: "publish"}` not answered yet (see onError)
  subscriptions: 0, // offers taken
  resubscribes: 0, // `subscribe` sent since the media last connected
  // the class
  chat: null, // ChatBox
  hand: false,
  // {poll_id, question, options, answered: index | null, closed, results: final poll_results | null, epoch}
  poll: null,
};

function pageState() {
  const s = page.signaling;
  if (!s) return "error";
  if (s.state !== "joined") return s.state; // connecting, reconnecting, closed, error
  if ((page.pc && page.media === "connected") || (page.hls && liveFresh())) return "connected";
  return "joined";
}

// --- what plays ------------------------------------------------------------------------------

function recording() {
  return page.lesson && page.lesson.recording && page.lesson.recording.url ? page.lesson.recording : null;
}

/** The slot has a recording the page can fall back to. */
function hasRecording() {
  return !!recording() && !page.recordingFailed;
}

function recordedPlaying() {
  return !rec.paused && !rec.ended && rec.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA && !page.recordingFailed;
}

function liveFresh(now = performance.now()) {
  return page.live && now - page.lastFrameAt < FRAME_FRESH_MS && video.videoWidth > 0;
}

function source() {
  if (page.active === "recorded") return recordedPlaying() ? "recorded" : "none";
  if (!liveFresh()) return "none";
  return page.hls ? "hls" : "live";
}

function shown() {
  return page.active === "recorded" ? rec : video;
}

function recordedFrames() {
  if (typeof rec.getVideoPlaybackQuality !== "function") return 0;
  return rec.getVideoPlaybackQuality().totalVideoFrames;
}

function stats() {
  const el = shown();
  const recorded = page.active === "recorded";
  return {
    state: pageState(),
    role: page.role,
    source: source(),
    live: page.live,
    media: page.media,
    hls: page.hls ? { url: page.hls, latency: hlsPlayer.latency(), errors: hlsPlayer.errors } : null,
    layer: page.layer,
    layerReason: page.layerReason,
    freezes: page.freezes, // this subscription's video freezes, as the browser counts them
    audioConcealed: page.audioConcealed, // share of the sound the browser had to make up (losses)
    // What plays now: the live video's decoder, or the recording's frames.
    framesDecoded: recorded ? recordedFrames() : page.framesDecoded,
    bytesReceived: page.bytesReceived,
    audioPacketsReceived: page.audioPacketsReceived,
    videoWidth: el.videoWidth,
    videoHeight: el.videoHeight,
    muted: el.muted,
    firstFrameMs: page.firstFrameMs,
    firstLiveFrameMs: page.firstLiveFrameMs,
    // The timetable slot and the fallback.
    lesson: page.lesson ? page.lesson.mode : null,
    recording: recording() ? recording().id : null,
    recordedTime: rec.currentTime || 0,
    recordedPaused: rec.paused,
    recordedFrames: recordedFrames(),
    liveFramesDecoded: page.framesDecoded,
    switches: page.switches,
    lastSwitchMs: page.lastSwitch ? page.lastSwitch.ms : null,
    lastSwitch: page.lastSwitch ? { ...page.lastSwitch } : null,
    // the class
    chat: page.chat ? page.chat.received : 0,
    hand: page.hand,
    poll: page.poll
      ? { poll_id: page.poll.poll_id, answered: page.poll.answered, closed: page.poll.closed, final: !!page.poll.results }
      : null,
    reconnects: page.signaling ? page.signaling.reconnects : 0,
    reconnectAttempts: page.signaling ? page.signaling.attempt : 0, // since the last `joined`
    resumed: !!(page.signaling && page.signaling.joined && page.signaling.joined.resumed),
    subscriptions: page.subscriptions,
    ended: page.signaling ? page.signaling.ended : null,
    // the shared screen, the student on stage, and this student on stage
    screen: screenShown() ? { framesDecoded: page.screenFrames, videoWidth: screenVideo.videoWidth } : null,
    stage: stageStats(page, stageVideo),
    invited: page.invitation,
    onStage: page.onStage,
    publishing: !!page.pub,
    publish: page.pub ? { media: page.pub.media, framesEncoded: page.pub.framesEncoded, answered: !page.pub.awaiting } : null,
  };
}

/** The teacher's shared screen takes the main place: its frames flow, and the live video shows. */
function screenShown(now = performance.now()) {
  return page.active === "live" && page.live && now - page.screenLastFrameAt < SCREEN_STALE_MS && screenVideo.videoWidth > 0;
}

expose({ stats, dropConnection: () => page.signaling && page.signaling.dropConnection() });

/**
 * Which element should show now, and why: [target, reason, time of the cause].
 * The time of the cause is performance.now() of the broadcast message (or `joined`), of the
 * last frame before a freeze, or of the frames resuming after one.
 */
function wanted(now) {
  if (!hasRecording()) return ["live", "no_recording", now];
  if (page.lesson.mode === "recorded") return ["recorded", "recorded_slot", page.joinedAt ?? now];
  if (page.lesson.mode !== "live") return ["live", "no_slot", now];
  if (!page.live) return ["recorded", "no_teacher", page.liveEndedAt];
  if (page.active === "recorded") {
    // Back to live once the teacher's frames flow again: a new frame since the broadcast began,
    // and a recent one.
    const flowing = page.lastFrameAt > page.liveSince && now - page.lastFrameAt < FREEZE_MS && video.videoWidth > 0;
    if (!flowing) return ["recorded", null, now];
    if (page.liveSince > page.recordedSince) return ["live", "broadcast", page.liveSince];
    return ["live", "frames_resumed", Math.max(page.framesResumedAt, page.liveSince)];
  }
  // Showing live: fall back when no frame came for FREEZE_MS (right after joining, once the
  // subscription had JOIN_GRACE_MS to bring a first frame).
  const since = Math.max(page.lastFrameAt, page.liveSince);
  const started = page.lastFrameAt > page.liveSince || now >= page.graceUntil;
  if (started && now - since >= FREEZE_MS) return ["recorded", "frozen", since];
  return ["live", null, now];
}

function decide() {
  const now = performance.now();
  const [target, reason, causeAt] = wanted(now);
  if (target !== page.active) switchTo(target, reason, causeAt);
}

/** Record a switch: `ms` from its cause to the new source playing, `decidedMs` to the decision. */
function noteSwitch(from, to, reason, causeAt, decidedAt) {
  const now = performance.now();
  const ms = Math.max(0, Math.round(now - causeAt));
  const decidedMs = Math.max(0, Math.round(decidedAt - causeAt));
  page.switches += 1;
  page.lastSwitch = { from, to, reason, ms, decidedMs, atMs: Math.round(now) };
  console.info(`skyclass: ${from} → ${to} (${reason}) in ${ms} ms (decided after ${decidedMs} ms)`);
}

function switchTo(target, reason, causeAt) {
  const decidedAt = performance.now();
  const from = page.active;
  page.active = target;
  if (target === "recorded") {
    page.recordedSince = performance.now();
    video.muted = true; // the live sound, if any comes, stays off under the recording
    rec.hidden = false;
    const switchedFrom = page.switches === 0 && from === "live" && page.framesDecoded === 0 ? "none" : from;
    playWithSound(rec).then((ok) => {
      if (!ok || page.active !== "recorded") return;
      noteSwitch(switchedFrom, "recorded", reason, causeAt, decidedAt);
      render();
    });
  } else {
    rec.pause();
    rec.hidden = true;
    // The live video has been playing (muted) underneath; give it its sound back.
    if (video.srcObject) playWithSound(video);
    // A recording that failed is dropped, not switched away from: nothing to time.
    if (reason !== "no_recording") noteSwitch(from, "live", reason, causeAt, decidedAt);
  }
  render();
}

// --- rendering -----------------------------------------------------------------------------

const NOTE_TEXT = {
  recorded_slot: "录播课 Recorded lesson",
  no_teacher: "老师暂未直播，正在播放录播课 The teacher is not live — playing the recorded lesson",
  frozen: "直播画面中断，先播放录播课 The live video stalled — playing the recorded lesson meanwhile",
};

// What the page says when the server sends this student a lower layer of the teacher's camera.
const QUALITY_TEXT = {
  low: "网络较慢，已切换为流畅画质 Slow network — lower video quality",
  still: "网络很差，保留声音，画面每几秒更新 Poor network — sound continues, the picture updates every few seconds",
};

const ENDED_TEXT = {
  removed: "您已被老师移出本节课 You were removed from this lesson",
  lesson_ended: "本节课已结束 The lesson has ended",
};

function render() {
  const state = pageState();
  showState(state);
  const src = source();
  overlay.hidden = src !== "none";
  let text;
  if (page.active === "recorded") {
    text = page.recordingFailed ? "录播课无法播放 The recorded lesson cannot be played." : "正在载入录播课… Loading the recorded lesson…";
  } else if (state === "error" || state === "closed") text = ENDED_TEXT[page.signaling.ended] || "未连接 Not connected";
  else if (state === "reconnecting") text = "正在重新连接… Reconnecting…";
  else if (!page.live && page.recordingFailed)
    text = "录播课无法播放，等待老师开始直播 The recorded lesson cannot be played — waiting for the teacher…";
  else if (!page.live) text = "等待老师开始直播 Waiting for the teacher to start…";
  else if (performance.now() - page.lastFrameAt < FRAME_FRESH_MS || page.framesDecoded === 0)
    text = "老师已开始直播，正在载入画面… The teacher is live — loading the video…";
  else text = "画面暂时中断，正在恢复… The video paused — reconnecting…";
  if (overlayText.textContent !== text) overlayText.textContent = text;
  overlay.dataset.live = String(page.live);
  overlay.classList.toggle("stopped", state === "error" || state === "closed");

  badge.hidden = src !== "recorded";
  let noteText = "";
  if (src === "recorded") {
    if (page.lesson.mode === "recorded")
      noteText = [NOTE_TEXT.recorded_slot, page.lesson.subject].filter(Boolean).join(" · ");
    else noteText = page.live ? NOTE_TEXT.frozen : NOTE_TEXT.no_teacher;
  }
  note.hidden = !noteText;
  if (note.textContent !== noteText) note.textContent = noteText;
  const qualityText = src === "live" ? QUALITY_TEXT[page.layer] || "" : "";
  qualityNote.hidden = !qualityText;
  if (qualityNote.textContent !== qualityText) qualityNote.textContent = qualityText;
  document.body.dataset.source = src;

  unmuteBtn.hidden = !(page.autoplayBlocked && (shown().muted || (!!page.stage && stageVideo.muted)));
  const sharing = screenShown();
  stageBox.classList.toggle("sharing", sharing);
  screenVideo.hidden = !sharing;
  renderClass(state);
  renderStage(state);
}

function renderStage(state) {
  const inClass = state === "joined" || state === "connected";
  const me = page.participantId;
  const stage = page.stage;
  const other = !!stage && stage.participant_id !== me;
  stageTile.hidden = !other;
  if (other) {
    if (stageName.textContent !== stage.name) stageName.textContent = stage.name;
    stageMutedEl.hidden = !stage.muted;
    const flowing = page.stageLastFrameAt > page.stageSince && performance.now() - page.stageLastFrameAt < STAGE_FRESH_MS && stageVideo.videoWidth > 0;
    stageWaiting.hidden = flowing;
  }
  inviteCard.hidden = !(page.invitation && !page.pub && inClass);
  goBtn.disabled = declineBtn.disabled = !inClass;
  meCard.hidden = !page.pub && !page.onStage;
  let status;
  if (page.onStage && page.pub && page.pub.media === "connected") status = "你在台上，全班都能看到、听到你 You are on stage — everyone sees and hears you";
  else if (page.pub && page.pub.media === "failed") status = "上台失败 Could not go on stage";
  else if (page.onStage && !page.pub) status = "你在台上 You are on stage";
  else status = "正在上台… Going on stage…";
  if (meStatus.textContent !== status) meStatus.textContent = status;
  meCard.dataset.state = page.onStage ? "on-stage" : "joining";
  meMuted.hidden = !(page.onStage && stage && stage.participant_id === me && stage.muted);
  leaveBtn.disabled = !page.pub && !page.onStage;
}

function renderClass(state) {
  const inClass = state === "joined" || state === "connected";
  const student = page.role === "student" || page.role === null;
  handBtn.hidden = !student;
  handBtn.disabled = !inClass;
  handBtn.setAttribute("aria-pressed", String(page.hand));
  const label = page.hand ? "✋ 放下手 Lower hand" : "✋ 举手 Raise hand";
  if (handBtn.textContent !== label) handBtn.textContent = label;
  handBtn.classList.toggle("raised", page.hand);
  handNote.hidden = !(page.hand && inClass);
  if (page.chat) page.chat.setEnabled(inClass);
  renderPoll(inClass);
}

function showLesson(lesson) {
  if (!lesson) {
    lessonEl.hidden = true;
    return;
  }
  const mode = lesson.mode === "recorded" ? "录播 Recorded" : "直播 Live";
  lessonEl.textContent = [lesson.class_name, lesson.subject, mode].filter(Boolean).join(" · ");
  lessonEl.dataset.mode = lesson.mode;
  lessonEl.hidden = false;
}

// --- playback ------------------------------------------------------------------------------

/**
 * Play `el` with sound; when autoplay with sound is blocked, play it muted and offer the
 * "click to unmute" button. Resolves true once it plays, false when it did not (or was paused
 * meanwhile by a switch).
 */
async function playWithSound(el) {
  el.muted = page.autoplayBlocked;
  try {
    await el.play();
    render();
    return true;
  } catch (e) {
    if (e.name === "NotAllowedError" && !el.muted) {
      page.autoplayBlocked = true;
      el.muted = true;
      try {
        await el.play();
        render();
        return true;
      } catch (e2) {
        if (e2.name !== "AbortError") console.warn("skyclass: muted play", e2);
      }
    } else if (e.name !== "AbortError") {
      console.warn("skyclass: play", e);
    }
    render();
    return false;
  }
}

// Time from navigation start to the first video frame shown (measured, for tests and logs).
function watchFirstFrame(el, live) {
  const rvfc = "requestVideoFrameCallback" in el;
  const mark = () => {
    if (el.videoWidth > 0) {
      const ms = Math.round(performance.now());
      if (page.firstFrameMs === null) {
        page.firstFrameMs = ms;
        console.info(`skyclass: first frame after ${ms} ms (${live ? "live" : "recorded"})`);
      }
      if (live && page.firstLiveFrameMs === null) page.firstLiveFrameMs = ms;
    } else if (rvfc) {
      el.requestVideoFrameCallback(mark);
    }
  };
  if (rvfc) el.requestVideoFrameCallback(mark);
  else el.addEventListener("loadeddata", mark, { once: true });
}
watchFirstFrame(video, true);
watchFirstFrame(rec, false);
video.addEventListener("resize", render);
for (const ev of ["playing", "pause", "waiting", "resize"]) rec.addEventListener(ev, render);
rec.addEventListener("error", () => {
  const err = rec.error;
  console.warn("skyclass: the recording cannot be played", err && err.code, err && err.message);
  page.recordingFailed = true;
  decide();
  render();
});

let playing = false;

async function startPlayback() {
  if (playing) return;
  playing = true;
  if (page.active === "recorded") {
    // The recording plays now: start the live video silently underneath.
    video.muted = true;
    video.play().catch(() => {});
    return;
  }
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

handBtn.addEventListener("click", toggleHand);

unmuteBtn.addEventListener("click", () => {
  // A click lets this page play sound from now on, the other element included.
  page.autoplayBlocked = false;
  const el = shown();
  el.muted = false;
  el.play().catch(() => {});
  if (page.stage && stageVideo.srcObject) {
    stageVideo.muted = false;
    stageVideo.play().catch(() => {});
  }
  render();
});
goBtn.addEventListener("click", goOnStage);
declineBtn.addEventListener("click", declineStage);
leaveBtn.addEventListener("click", leaveStage);
for (const ev of ["resize", "playing"]) {
  screenVideo.addEventListener(ev, render);
  stageVideo.addEventListener(ev, render);
}

function loadRecording() {
  const r = recording();
  if (!r) return;
  const url = new URL(r.url, location.href).href;
  if (rec.src === url) return;
  page.recordingFailed = false;
  rec.src = url;
  rec.load(); // preloaded, so that a live slot's fallback starts at once
}

// --- subscription --------------------------------------------------------------------------

/**
 * The peer connection for a new `offer`. Every offer is a new subscription (at join, after a
 * reconnect, after `subscribe`): the old connection, if any, is closed and replaced.
 */
function freshPc(slots) {
  const old = page.pc;
  if (old) {
    page.pc = null;
    old.close();
    page.base = {
      frames: page.framesDecoded,
      bytes: page.bytesReceived,
      audio: page.audioPacketsReceived,
      screen: page.screenFrames,
      stage: page.stageFrames,
      stageAudio: page.stageAudioPackets,
    };
  }
  const pc = newPeerConnection();
  page.pc = pc;
  page.slots = Array.isArray(slots) ? slots : null;
  page.media = pc.connectionState;
  page.trickle = trickleIce(pc, page.signaling, "subscribe");
  pc.addEventListener("track", (ev) => {
    if (page.pc !== pc) return;
    const slot = slotOf(pc, ev.transceiver, slots);
    if (slot === "audio" || slot === "video") {
      replaceTrack(remoteStream, ev.track);
      if (video.srcObject !== remoteStream) video.srcObject = remoteStream;
      if (playing && video.paused) video.play().catch(() => {});
      startPlayback();
    } else if (slot === "screen") {
      replaceTrack(screenStream, ev.track);
      if (screenVideo.srcObject !== screenStream) screenVideo.srcObject = screenStream;
      screenVideo.play().catch(() => {}); // no sound: it is muted
    } else if (slot === "stage_audio" || slot === "stage_video") {
      replaceTrack(stageStream, ev.track);
      if (stageVideo.srcObject !== stageStream) stageVideo.srcObject = stageStream;
      if (stageVideo.paused) playWithSound(stageVideo);
    }
  });
  pc.addEventListener("connectionstatechange", () => {
    if (page.pc !== pc) return;
    page.media = pc.connectionState;
    if (pc.connectionState === "connected") page.resubscribes = 0;
    if (pc.connectionState === "failed") {
      const s = page.signaling.state;
      if (s === "reconnecting") {
        // The re-join brings a fresh offer.
      } else if (s === "joined" && page.resubscribes < RESUBSCRIBE_TRIES && page.signaling.send({ type: "subscribe" })) {
        page.resubscribes += 1;
        console.warn("skyclass: media connection failed; asking for a fresh subscription");
      } else if (s === "joined") {
        showError({ code: "media_failed", message: "请刷新页面 Please reload the page.", fatal: true });
      }
    }
    render();
  });
  return pc;
}

async function onOffer(msg) {
  if (msg.target !== "subscribe") return;
  // Back after a dropped connection: `stage` comes before the offer when someone is on stage.
  if (page.stageEpoch !== page.signaling.epoch) {
    if (page.onStage) stopPublishing(); // our turn ended while we were away
    if (page.stage) setStage(null);
  }
  const pc = freshPc(msg.slots);
  const trickle = page.trickle;
  page.subscriptions += 1;
  try {
    await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    if (page.pc !== pc) return; // replaced by a newer offer meanwhile
    page.signaling.send({ type: "answer", target: "subscribe", sdp: pc.localDescription.sdp });
    trickle.ready();
  } catch (e) {
    if (page.pc !== pc) return;
    console.error("skyclass: subscribe", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
  }
  render();
}

// --- HLS --------------------------------------------------------------------------------------

/** The HLS player runs while the teacher is live (under the recording too, muted, like WebRTC). */
function syncHls() {
  if (page.hls && page.live && page.signaling.state === "joined") {
    if (hlsPlayer.url === page.hls) return;
    hlsPlayer.play(page.hls).then(() => (page.active === "live" ? playWithSound(video) : video.play().catch(() => {})));
  } else if (hlsPlayer.url) {
    hlsPlayer.stop();
  }
}

/** Count the HLS pictures like the WebRTC ones (the element's count starts over with each stream). */
function countHlsFrames() {
  const frames = hlsPlayer.frames();
  const added = frames >= page.hlsFrames ? frames - page.hlsFrames : frames;
  page.hlsFrames = frames;
  if (added > 0) {
    const now = performance.now();
    if (now - page.lastFrameAt >= FREEZE_MS) page.framesResumedAt = now;
    page.lastFrameAt = now;
    page.framesDecoded += added;
  }
}

// --- signaling -----------------------------------------------------------------------------

function setLive(live) {
  const now = performance.now();
  if (live && !page.live) page.liveSince = now;
  if (!live && page.live) page.liveEndedAt = now;
  page.live = live;
}

function onMessage(msg) {
  switch (msg.type) {
    case "joined": {
      const now = performance.now();
      page.role = msg.role;
      if (page.joinedAt === null) {
        page.joinedAt = now;
        page.live = !!msg.live;
        if (page.live) {
          page.liveSince = now;
          page.graceUntil = now + JOIN_GRACE_MS;
        } else {
          page.liveEndedAt = now;
        }
      } else {
        // Back after a dropped connection: a fresh subscription offer follows.
        console.info(`skyclass: back in the classroom (resumed: ${msg.resumed}, hand: ${msg.hand})`);
        setLive(!!msg.live);
        page.graceUntil = now + JOIN_GRACE_MS;
        // A poll still open comes (again) on this connection; one that did not was closed meanwhile.
        if (page.poll && !page.poll.closed && page.poll.epoch !== page.signaling.epoch) page.poll.closed = true;
      }
      page.hand = !!msg.hand;
      page.hls = msg.hls || null;
      syncHls();
      page.participantId = msg.participant_id;
      page.chat.selfId = msg.participant_id;
      page.lesson = msg.lesson && typeof msg.lesson === "object" ? msg.lesson : null;
      roomEl.textContent = msg.room;
      nameEl.textContent = msg.name || "";
      replayLink.href = `/replay?room=${encodeURIComponent(msg.room)}`;
      replayLink.hidden = false;
      showLesson(page.lesson);
      loadRecording();
      if (msg.role === "teacher") {
        const q = new URLSearchParams(location.search);
        showError({ code: "wrong_page", message: `这是老师链接，请打开 This is a teacher link; open /teach?${q}`, fatal: false });
      }
      break;
    }
    case "offer":
      onOffer(msg);
      break;
    case "broadcast":
      setLive(!!msg.live);
      syncHls();
      break;
    case "quality":
      page.layer = msg.layer;
      page.layerReason = msg.reason;
      console.info(`skyclass: video layer ${msg.layer} (${msg.reason})`);
      render();
      break;
    case "ice":
      if (msg.target === "subscribe" && page.pc && msg.candidate) {
        page.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      } else if (msg.target === "publish" && page.pub && msg.candidate) {
        page.pub.pc.addIceCandidate({ candidate: msg.candidate, sdpMid: msg.sdpMid, sdpMLineIndex: msg.sdpMLineIndex }).catch(() => {});
      }
      break;
    case "answer":
      onPublishAnswer(msg);
      break;
    case "invited":
      onInvited();
      break;
    case "stage":
      onStage(msg);
      break;
    case "chat":
      page.chat.add(msg);
      break;
    case "poll":
      onPoll(msg);
      break;
    case "poll_closed":
      if (page.poll && page.poll.poll_id === msg.poll_id) page.poll.closed = true;
      break;
    case "poll_results":
      if (msg.final) onFinalResults(msg);
      break;
    case "removed":
      showNotice("removed");
      break;
    case "lesson_ended":
      showNotice("lesson_ended");
      break;
  }
  decide();
  render();
}

/** A non-fatal error that belongs to the chat, the poll or going on stage; true when shown there. */
function onError(msg) {
  if (page.chat.takeError(msg)) return true;
  const pub = page.pub;
  if (pub && pub.sent && pub.awaiting && ["forbidden", "bad_sdp", "bad_state", "server_error"].includes(msg.code)) {
    // Our publish was refused: the teacher withdrew the invitation (or invited someone else).
    console.warn("skyclass: going on stage refused", msg);
    stopPublishing();
    showError(msg.code === "forbidden" || msg.code === "bad_state" ? { ...msg, code: "invitation_lapsed" } : msg);
    render();
    return true;
  }
  if (msg.code === "bad_state" && page.publishIce > 0 && /publish/.test(msg.message || "")) {
    // A candidate trickled for our stage connection that the server did not take (it reads
    // the candidates in the offer): nothing for the student to do.
    page.publishIce -= 1;
    console.debug("skyclass: publish candidate not taken:", msg.message);
    return true;
  }
  const poll = page.poll;
  if (poll && poll.answeredAt && performance.now() - poll.answeredAt < 5000) {
    if (msg.code === "already_answered") {
      poll.already = true;
      render();
      return true;
    }
    if (msg.code === "bad_state") {
      poll.closed = true; // the poll ended before the answer arrived
      render();
      return true;
    }
  }
  return false;
}

// --- on stage ------------------------------------------------------------------------------

function setStage(stage) {
  const before = page.stage ? page.stage.participant_id : null;
  page.stage = stage;
  if (stage && stage.participant_id !== before) page.stageSince = performance.now();
  if (stage && stage.participant_id !== page.participantId && stageVideo.srcObject && stageVideo.paused) playWithSound(stageVideo);
}

function onStage(msg) {
  page.stageEpoch = page.signaling.epoch;
  const stage = msg.participant_id ? { participant_id: msg.participant_id, name: msg.name || "", muted: !!msg.muted } : null;
  setStage(stage);
  if (stage && stage.participant_id === page.participantId) {
    page.onStage = true;
    page.invitation = false;
    return;
  }
  // Someone else, or nobody: our turn (if we had one) is over; the server stopped it already.
  if (page.onStage || (page.pub && !page.pub.awaiting)) stopPublishing();
  page.onStage = false;
  if (stage) page.invitation = false; // someone else went on stage: the invitation lapsed
}

function onInvited() {
  if (page.pub || page.onStage) return;
  page.invitation = true;
  render();
  requestAnimationFrame(() => inviteCard.scrollIntoView({ block: "nearest", behavior: "smooth" }));
  goBtn.focus({ preventScroll: true });
}

function declineStage() {
  // Nothing to tell the server: the invitation simply lapses.
  page.invitation = false;
  render();
}

/** "Go on stage": camera and microphone, published on a second peer connection. */
async function goOnStage() {
  if (page.pub || !page.invitation) return;
  page.invitation = false;
  if (document.getElementById("error").dataset.code === "invitation_lapsed") clearError();
  const pub = { pc: null, stream: null, trickle: null, sent: false, trickling: false, awaiting: true, media: "new", framesEncoded: 0 };
  page.pub = pub;
  render();
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    console.warn("skyclass: getUserMedia", e);
    if (page.pub === pub) page.pub = null;
    showError({ code: "no_camera", message: `${e.name}: ${e.message}`, fatal: false });
    render();
    return;
  }
  if (page.pub !== pub || page.signaling.state !== "joined") {
    for (const t of stream.getTracks()) t.stop();
    if (page.pub === pub) page.pub = null;
    render();
    return;
  }
  pub.stream = stream;
  selfVideo.srcObject = stream;
  selfVideo.muted = true; // never hear yourself
  selfVideo.play().catch(() => {});
  const pc = newPeerConnection();
  pub.pc = pc;
  pub.trickle = trickleIce(pc, page.signaling, "publish");
  let candidates = 0; // icecandidate events so far: each becomes one `ice` once trickling
  pc.addEventListener("icecandidate", () => {
    candidates += 1;
    if (page.pub === pub && pub.trickling) page.publishIce += 1;
  });
  pc.addEventListener("connectionstatechange", () => {
    if (page.pub !== pub) return;
    pub.media = pc.connectionState;
    if (pc.connectionState === "failed") {
      showError({ code: "media_failed", message: "上台失败 Could not go on stage.", fatal: false });
      leaveStage();
    }
    render();
  });
  for (const track of [...stream.getAudioTracks(), ...stream.getVideoTracks()]) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  try {
    await pc.setLocalDescription(await pc.createOffer());
    const gatherStart = performance.now();
    await gathered(pc, ICE_GATHER_WAIT_MS);
    if (page.pub !== pub) return;
    console.info(`skyclass: going on stage (ICE gathering ${pc.iceGatheringState} after ${Math.round(performance.now() - gatherStart)} ms)`);
    if (!page.signaling.send({ type: "publish", sdp: pc.localDescription.sdp })) throw new Error("not connected");
    pub.sent = true;
    // The offer carries the candidates gathered so far; when gathering had not finished, the
    // rest follow as `ice {target: "publish"}` (trickleIce sends the held ones too).
    if (pc.iceGatheringState !== "complete") {
      pub.trickling = true;
      page.publishIce = candidates;
      pub.trickle.ready();
    }
  } catch (e) {
    if (page.pub !== pub) return;
    console.error("skyclass: publish", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    stopPublishing();
  }
  render();
}

/** Resolves once ICE gathering is complete, or after `ms`. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

async function onPublishAnswer(msg) {
  const pub = page.pub;
  if (msg.target !== "publish" || !pub || !pub.pc || pub.pc.signalingState !== "have-local-offer") return;
  pub.awaiting = false;
  try {
    await pub.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
  } catch (e) {
    console.error("skyclass: publish answer", e);
    showError({ code: "media_failed", message: String(e), fatal: false });
    leaveStage();
  }
  render();
}

/** "Leave stage": the server ends the turn and tells everyone. */
function leaveStage() {
  if (page.onStage || (page.pub && !page.pub.awaiting)) page.signaling.send({ type: "unpublish" });
  stopPublishing();
  render();
}

/** Stop sending our camera and microphone (the light goes out). */
function stopPublishing() {
  const pub = page.pub;
  page.pub = null;
  page.onStage = false;
  page.publishIce = 0;
  if (!pub) return;
  if (pub.pc) pub.pc.close();
  if (pub.stream) for (const t of pub.stream.getTracks()) t.stop();
  selfVideo.srcObject = null;
}

// --- raised hand ---------------------------------------------------------------------------

function toggleHand() {
  const raised = !page.hand;
  if (page.signaling.send({ type: "hand", raised })) page.hand = raised;
  render();
}

// --- poll ----------------------------------------------------------------------------------

function onPoll(msg) {
  const same = page.poll && page.poll.poll_id === msg.poll_id;
  const answered = Number.isInteger(msg.answered) ? msg.answered : same ? page.poll.answered : null;
  page.poll = {
    poll_id: msg.poll_id,
    question: msg.question,
    options: Array.isArray(msg.options) ? msg.options : [],
    answered,
    answeredAt: same ? page.poll.answeredAt : 0,
    already: same ? page.poll.already : false,
    closed: false,
    results: null,
    epoch: page.signaling.epoch,
  };
  if (same && pollChoices.children.length) return;
  // A new question: bring the card into view (on a phone it sits under the video).
  requestAnimationFrame(() => pollCard.scrollIntoView({ block: "nearest", behavior: "smooth" }));
  pollChoices.replaceChildren(
    ...page.poll.options.map((option, i) =>
      h(
        "button",
        { type: "button", class: "btn poll-choice", dataset: { choice: i }, onclick: () => answerPoll(i) },
        h("span", { class: "letter", text: LETTERS[i] }),
        ` ${option}`,
      ),
    ),
  );
}

function answerPoll(choice) {
  const poll = page.poll;
  if (!poll || poll.answered !== null || poll.closed) return;
  if (!page.signaling.send({ type: "poll_answer", poll_id: poll.poll_id, choice })) {
    pollNote.textContent = "现在没有连接，请稍后再选 Not connected — choose again in a moment.";
    return;
  }
  poll.answered = choice;
  poll.answeredAt = performance.now();
  render();
}

function onFinalResults(msg) {
  if (!page.poll || page.poll.poll_id !== msg.poll_id) {
    // Results of a poll this page did not see (joined after it opened): show them all the same.
    page.poll = { ...msg, answered: null, answeredAt: 0, closed: true, results: null, epoch: page.signaling.epoch };
    pollChoices.replaceChildren();
  }
  page.poll.closed = true;
  page.poll.results = msg;
}

function renderPoll(inClass) {
  const poll = page.poll;
  pollCard.hidden = !poll;
  if (!poll) return;
  const q = $("poll-question");
  if (q.textContent !== poll.question) q.textContent = poll.question;
  const answered = poll.answered !== null;
  for (const b of pollChoices.children) {
    const i = Number(b.dataset.choice);
    b.disabled = answered || poll.closed || !inClass;
    b.classList.toggle("chosen", poll.answered === i);
    b.setAttribute("aria-pressed", String(poll.answered === i));
  }
  pollChoices.hidden = !!poll.results;
  pollResults.hidden = !poll.results;
  const status = $("poll-status");
  let label;
  let state;
  if (poll.results) [label, state] = ["结果 Results", "results"];
  else if (poll.closed) [label, state] = ["已结束 Closed", "closed"];
  else if (answered) [label, state] = ["已提交 Answered", "answered"];
  else [label, state] = ["请选择 Choose one", "open"];
  if (status.textContent !== label) status.textContent = label;
  status.dataset.state = state;
  pollCard.dataset.state = state;
  if (poll.results) {
    const r = poll.results;
    if (pollResults.dataset.pollId !== r.poll_id) {
      pollResults.dataset.pollId = r.poll_id;
      const total = Math.max(1, r.answered);
      pollResults.replaceChildren(
        ...r.options.map((option, i) => {
          const count = r.counts[i] || 0;
          const pct = Math.round((100 * count) / total);
          return h(
            "li",
            { class: `bar${poll.answered === i ? " mine" : ""}`, dataset: { count } },
            h("span", { class: "bar-label" }, h("span", { class: "letter", text: LETTERS[i] }), ` ${option}`),
            h("span", { class: "bar-track" }, h("span", { class: "bar-fill", style: `width: ${r.answered ? pct : 0}%` })),
            h("span", { class: "bar-count", text: `${count} (${r.answered ? pct : 0}%)` }),
          );
        }),
      );
    }
    pollNote.textContent = `共 ${r.answered} 人回答 ${r.answered} answered` + (answered ? " · 您的答案已标出 Yours is marked" : "");
  } else if (poll.closed) {
    pollNote.textContent = "投票已结束 The poll has ended.";
  } else if (poll.already) {
    pollNote.textContent = "您已经回答过了，第一次的答案有效 You answered already — your first answer counts.";
  } else if (answered) {
    pollNote.textContent = "已提交，等待老师公布结果 Answered — waiting for the teacher.";
  } else {
    pollNote.textContent = inClass ? "" : "正在重新连接… Reconnecting…";
  }
}

function onSignalingChange() {
  const s = page.signaling.state;
  syncHls();
  if ((s === "closed" || s === "error") && page.pc) {
    page.pc.close();
    page.media = "closed";
    setLive(false); // a live slot falls back to its recording, which keeps playing
  }
  if (s === "closed" || s === "error") {
    stopPublishing();
    page.invitation = false;
    page.stage = null;
  }
  decide();
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  if (page.hls) countHlsFrames();
  const pc = page.pc;
  if (pc && pc.signalingState !== "closed") {
    const report = await pc.getStats();
    if (page.pc !== pc) return; // replaced meanwhile: these counters belong to the old one
    const base = page.base;
    const slots = inboundBySlot(report, pc, page.slots);
    // By slot only: the first video report of the connection may be the screen or the stage.
    const v = slots.video;
    const a = slots.audio;
    const now = performance.now();
    if (slots.screen) {
      const frames = base.screen + (slots.screen.framesDecoded || 0);
      if (frames > page.screenFrames) page.screenLastFrameAt = now;
      page.screenFrames = frames;
    }
    if (slots.stage_video) {
      const frames = base.stage + (slots.stage_video.framesDecoded || 0);
      if (frames > page.stageFrames) page.stageLastFrameAt = now;
      page.stageFrames = frames;
    }
    if (slots.stage_audio) page.stageAudioPackets = base.stageAudio + (slots.stage_audio.packetsReceived || 0);
    if (v) {
      const frames = base.frames + (v.framesDecoded || 0);
      if (frames > page.framesDecoded) {
        const now = performance.now();
        if (now - page.lastFrameAt >= FREEZE_MS) page.framesResumedAt = now;
        page.lastFrameAt = now;
      }
      page.framesDecoded = frames;
      page.bytesReceived = base.bytes + (v.bytesReceived || 0);
      // The browser's own count of freezes (a frame late by max(3 x the usual gap, the gap + 150 ms)).
      page.freezes = { count: v.freezeCount || 0, seconds: v.totalFreezesDuration || 0 };
    }
    if (a) {
      page.audioPacketsReceived = base.audio + (a.packetsReceived || 0);
      page.audioConcealed = a.concealedSamples && a.totalSamplesReceived ? a.concealedSamples / a.totalSamplesReceived : 0;
    }
  }
  const pub = page.pub;
  if (pub && pub.pc && pub.pc.signalingState !== "closed") {
    const out = findStat(await pub.pc.getStats(), "outbound-rtp", "video");
    if (out && page.pub === pub) pub.framesEncoded = out.framesEncoded || 0;
  }
  decide();
  render();
});

// Freeze detection and switching do not wait on getStats().
setInterval(() => {
  decide();
  render();
}, DECIDE_INTERVAL_MS);

// --- start ---------------------------------------------------------------------------------

function main() {
  startPage(page, { path: "/learn", roomEl, onMessage, onChange: onSignalingChange, onError, render });
}

main();
