// @ts-check
// Sky Classroom — student page (/learn?room=R&token=T).
//
// The server offers one subscription (recvonly here) right after `joined` and keeps it for the
// whole session; the teacher starting and stopping only starts and stops forwarding, announced
// by `broadcast {live}` (subscribe.js). The offer's `slots` name its m-lines: "audio" and "video"
// (the teacher's microphone and camera) play in the main video, "screen" (the teacher's shared
// screen) takes the main place while its frames flow (live.js); the timetable slot's recording
// stands in while there is no live video (player.js); "stage_audio" and "stage_video" (the
// student on stage, named by `stage`) play in a tile under it (stage.js).
//
// A viewer the server sends to its HLS tier (`joined.hls`, for a very big room or when the page
// asks with ?delivery=hls) gets no offer: while the teacher is live the main video plays that
// playlist through hls.js, and stats().source says "hls". The fallback to the recording is the same.
//
// `invited`: the teacher invites this student on stage; "Go on stage" publishes the camera and
// microphone as the teacher publishes (stage-turn.js, publish.js).
//
// Beside the video: "Raise hand" (`hand`), the teacher's poll (`poll`, `poll_answer`, final
// `poll_results`), and the chat. A dropped connection comes back by itself (connection.js); the
// server then offers a fresh subscription, which replaces the old peer connection. `removed`
// and `lesson_ended` end the page's session for good.

import { $, showState, showError, showNotice, expose } from "./dom.js";
import { Signaling, pageParams, startPage } from "./connection.js";
import { poll, useIceServers } from "./rtc.js";
import { Subscription } from "./subscribe.js";
import { ChatBox } from "./chat.js";
import { HandButton } from "./hands.js";
import { StudentPoll } from "./polls.js";
import { StageView } from "./stage.js";
import { StageTurn } from "./stage-turn.js";
import { Player } from "./player.js";
import { Ladder } from "./ladder.js";
import { QoeReporter } from "./qoe.js";
import { AskBox } from "./questions.js";

/** @typedef {import("./protocol").ServerMessage} ServerMessage */
/** @typedef {import("./protocol").ErrorOut} ErrorOut */
/** @typedef {import("./protocol").Offer} Offer */
/** @typedef {import("./protocol").Joined} Joined */
/** @typedef {import("./protocol").StageOut} StageOut */

const DECIDE_INTERVAL_MS = 200;

const roomEl = $("room");
const nameEl = $("name");
const replayLink = $("replay-link", HTMLAnchorElement);

/** @type {Signaling} */
const signaling = new Signaling({ ...pageParams(), onMessage, onChange: onSignalingChange, onError });
/** @type {ChatBox} */
const chat = new ChatBox(signaling);
const hand = new HandButton(signaling, render);
const polls = new StudentPoll(signaling, render);
const ask = new AskBox(signaling);
const chatCard = $("chat-card");
/** @type {{role: string | null, participantId: string | null}} */
const me = { role: null, participantId: null };
const stage = new StageView({
  play: (on) => {
    if (on.participant_id !== me.participantId) player.autoplay.play(stage.video);
  },
});
const player = new Player(signaling, { render, stageVideo: () => (stage.stage ? stage.video : null) });
const live = player.live;
const turn = new StageTurn(signaling, { me: () => me.participantId, render });
/**
 * A track of the subscription, where it plays.
 * @param {string} slot
 * @param {MediaStreamTrack} track
 */
function playTrack(slot, track) {
  if (live.addTrack(slot, track)) return;
  if (slot !== "stage_audio" && slot !== "stage_video") return;
  stage.addTrack(track);
  if (stage.video.paused) player.autoplay.play(stage.video);
}
const subscription = new Subscription(signaling, {
  onTrack: (slot, track) => {
    if (!ladder.hold(slot, track)) playTrack(slot, track);
  },
  onChange: render,
  onGiveUp: () => ladder.gaveUp(), // WebRTC cannot reach this page: the HTTP stream instead
  onMoved: () => signaling.check(), // a new network: the socket of the old one may be dead
});
// The data saver (省流量): sound and a still picture every few seconds; the page counts what it
// used, and what a minute costs now (over the last RATE_WINDOW_MS).
const RATE_WINDOW_MS = 10_000;
const saver = { on: false, button: $("data-saver", HTMLButtonElement), used: $("data-used"), rate: $("data-rate") };
/** @type {[number, number][]} (performance.now(), bytes used) of the last RATE_WINDOW_MS */
const usage = [];

/** What the lesson has used: WebRTC's media and the HLS segments (hls.js; not Safari's own player). */
const bytesUsed = () => subscription.bytes + live.hlsPlayer.bytes;

/** Bytes a minute over the last RATE_WINDOW_MS; null before there is a window to measure. */
function bytesPerMinute() {
  const now = performance.now();
  const used = bytesUsed();
  usage.push([now, used]);
  while (usage.length > 2 && now - usage[1][0] >= RATE_WINDOW_MS) usage.shift();
  const [at, bytes] = usage[0];
  if (now - at < RATE_WINDOW_MS / 2 || used < bytes) return null;
  return ((used - bytes) * 60_000) / (now - at);
}
// On a phone the picture takes the whole screen (turned sideways, it fills it).
$("fullscreen").addEventListener("click", () => {
  $("main-stage").requestFullscreen?.().catch((e) => console.warn("skyclass: fullscreen", e));
});
saver.button.addEventListener("click", () => {
  saver.on = !saver.on;
  // On HLS, the sound-only rendition; on WebRTC, the server sends sound and stills.
  live.soundOnly = saver.on;
  if (live.hls) live.syncHls();
  else signaling.send({ type: "data_saver", on: saver.on });
  render();
});
/** Video bytes and sound packets received so far: it grows while any media comes. */
const received = () => live.bytesReceived + live.audioPacketsReceived;
const ladder = new Ladder(signaling, subscription, {
  live: () => live.live,
  bytes: received,
  climbed: (held) => {
    live.hls = null; // the HLS stream stops; the held tracks take the picture
    live.syncHls();
    live.rebase();
    for (const [slot, track] of held) playTrack(slot, track);
    render();
  },
});

// A network change (Wi-Fi to 4G: a new address) cuts the media and the socket without a word.
// The browser's ICE finds the new path by itself within a second or two when it can; the socket
// it cannot. After STALL_MS without a packet while the teacher is live, the page checks its socket
// (a dead one reconnects, and the re-join brings a fresh subscription); after RESCUE_MS, if its own
// media connection is the one in trouble (ICE disconnected or failed; not the teacher's upload
// stalling, which every pupil would see at once), it asks for a fresh subscription itself.
const STALL_MS = 1000;
const RESCUE_MS = 2500;
const STILL_STALL_MS = 7000; // pictures without sound, on still pictures: one every 5 s
const stall = { count: 0, at: 0, offered: 0, checked: false, rescued: false };

function ownPathBroken() {
  const ice = subscription.pc ? subscription.pc.iceConnectionState : "closed";
  return ice === "disconnected" || ice === "failed";
}

function watchStall() {
  const now = performance.now();
  const count = received();
  const moving = live.audioPacketsReceived > 0 || (!saver.on && live.layer !== "still");
  const quiet = moving ? STALL_MS : STILL_STALL_MS;
  const watched = live.live && !live.hls && !!subscription.pc && !ladder.trying;
  if (count !== stall.count || !watched) {
    Object.assign(stall, { count, at: now, checked: false, rescued: false });
    return;
  }
  // Only a subscription that brought media has stalled (a new one is the ladder's to judge).
  if (count <= stall.offered || now - stall.at < quiet) return;
  if (!stall.checked) {
    stall.checked = true;
    console.warn(`skyclass: no media for ${Math.round(now - stall.at)} ms; checking the connection`);
    signaling.check();
  } else if (!stall.rescued && now - stall.at >= quiet + RESCUE_MS - STALL_MS && ownPathBroken()) {
    stall.rescued = true;
    console.warn(`skyclass: no media for ${Math.round(now - stall.at)} ms; asking for a fresh subscription`);
    signaling.send({ type: "subscribe" });
  }
}

function pageState() {
  const s = signaling.state;
  if (s !== "joined") return s; // connecting, reconnecting, closed, error
  if ((subscription.pc && subscription.media === "connected") || (live.hls && live.fresh())) return "connected";
  return "joined";
}

function stats() {
  return {
    state: pageState(),
    role: me.role,
    media: subscription.media,
    ...player.stats(),
    // how this pupil is reached: WebRTC straight or through TURN, the HLS tier, or the recording
    path: player.source() === "recorded" ? "recorded" : player.live.hls ? "hls" : subscription.path,
    ladder: ladder.stats(),
    rttMs: subscription.pc ? subscription.rttMs : null,
    loss: subscription.pc ? subscription.loss : null,
    dataSaver: saver.on,
    bytesUsed: bytesUsed(),
    // the class
    chat: chat.received,
    hand: hand.raised,
    poll: polls.stats(),
    reconnects: signaling.reconnects,
    reconnectAttempts: signaling.attempt, // since the last `joined`
    resumed: !!(signaling.joined && signaling.joined.resumed),
    subscriptions: subscription.count,
    ended: signaling.ended,
    // the student on stage, and this student on stage
    stage: stage.stats(),
    ...turn.stats(),
  };
}

expose({ stats, dropConnection: () => signaling.dropConnection() });
// What this pupil sees, told to the server every 15 s (the control room adds it up).
new QoeReporter(signaling, stats);

// --- rendering -----------------------------------------------------------------------------

function render() {
  const state = pageState();
  showState(state);
  player.render(state, !!stage.stage && stage.video.muted);
  const inClass = state === "joined" || state === "connected";
  hand.show(me.role === "student" || me.role === null, inClass);
  chat.setEnabled(inClass);
  ask.setEnabled(inClass);
  polls.render(inClass);
  renderStage(inClass);
  saver.button.setAttribute("aria-pressed", String(saver.on));
  saver.button.textContent = saver.on ? "🎬 看视频 Moving pictures" : "📶 省流量 Save data";
  // Proposed on a link that stays on still pictures anyway.
  saver.button.classList.toggle("suggest", !saver.on && player.live.layer === "still");
  const text = `本节课已用 ${(bytesUsed() / 1e6).toFixed(1)} MB used`;
  if (saver.used.textContent !== text) saver.used.textContent = text;
}

/** What a minute of this lesson costs now, as it comes. */
function renderRate() {
  const perMinute = bytesPerMinute();
  saver.rate.hidden = perMinute === null;
  if (perMinute !== null) saver.rate.textContent = `约 ${(perMinute / 1e6).toFixed(2)} MB/分钟 per minute`;
}

/** The classmate on stage (not ourselves), and our own turn. @param {boolean} inClass */
function renderStage(inClass) {
  const on = stage.stage;
  const other = !!on && on.participant_id !== me.participantId;
  stage.tile.hidden = !other;
  if (on && other) {
    if (stage.nameEl.textContent !== on.name) stage.nameEl.textContent = on.name;
    stage.mutedEl.hidden = !on.muted;
    stage.waiting.hidden = stage.flowing();
  }
  turn.render(inClass, on);
}

for (const ev of ["resize", "playing"]) stage.video.addEventListener(ev, render);

// --- signaling -----------------------------------------------------------------------------

/** @param {Offer} msg */
async function onOffer(msg) {
  if (msg.target !== "subscribe") return;
  // Back after a dropped connection: `stage` comes before the offer when someone is on stage.
  if (stage.epoch !== signaling.epoch) {
    if (turn.onStage) turn.stopPublishing(); // our turn ended while we were away
    if (stage.stage) stage.set(null);
  }
  if (subscription.pc) {
    live.rebase();
    stage.rebase();
  }
  ladder.offered();
  stall.offered = received();
  const failed = await subscription.take(msg);
  if (saver.on) signaling.send({ type: "data_saver", on: true }); // a new subscription keeps the choice
  if (failed) showError({ code: "media_failed", message: failed, fatal: false });
  render();
}

/** @param {Joined} msg */
function onJoined(msg) {
  me.role = msg.role;
  if (player.joinedAt !== null) {
    // Back after a dropped connection: a fresh subscription offer follows.
    console.info(`skyclass: back in the classroom (resumed: ${msg.resumed}, hand: ${msg.hand})`);
    // A poll still open comes (again) on this connection; one that did not was closed meanwhile.
    polls.rejoined();
    ladder.rejoined();
  }
  hand.raised = !!msg.hand;
  me.participantId = msg.participant_id;
  chat.selfId = msg.participant_id;
  useIceServers(msg.ice_servers || []);
  player.joined(msg);
  roomEl.textContent = msg.room;
  nameEl.textContent = msg.name || "";
  replayLink.href = `/replay?room=${encodeURIComponent(msg.room)}`;
  replayLink.hidden = false;
  // A broadcast's pupils without a class have no chat (it would reach the whole city): they ask.
  chatCard.hidden = !!msg.broadcast && !msg.section;
  if (msg.role === "teacher") {
    const q = new URLSearchParams(location.search);
    showError({ code: "wrong_page", message: `这是老师链接，请打开 This is a teacher link; open /teach?${q}`, fatal: false });
  }
}

/** @param {StageOut} msg */
function onStage(msg) {
  turn.stageChanged(stage.take(msg, signaling.epoch));
}

/** @param {ServerMessage} msg */
function onMessage(msg) {
  switch (msg.type) {
    case "joined":
      onJoined(msg);
      break;
    case "offer":
      onOffer(msg);
      break;
    case "broadcast":
      live.setLive(!!msg.live);
      live.syncHls();
      break;
    case "quality":
      live.quality(msg);
      render();
      break;
    case "ice":
      if (msg.target === "subscribe") subscription.addIce(msg);
      else if (msg.target === "publish") turn.publisher.addIce(msg);
      break;
    case "answer":
      turn.takeAnswer(msg);
      break;
    case "invited":
      turn.invited();
      break;
    case "stage":
      onStage(msg);
      break;
    case "chat":
      chat.add(msg);
      break;
    case "question_answered":
      ask.answered.add(msg.question);
      break;
    case "poll":
      polls.take(msg);
      break;
    case "poll_closed":
      polls.closed(msg.poll_id);
      break;
    case "poll_results":
      polls.finalResults(msg);
      break;
    case "removed":
      showNotice("removed");
      break;
    case "lesson_ended":
      showNotice("lesson_ended");
      break;
  }
  player.decide();
  render();
}

/**
 * A non-fatal error that belongs to the chat, going on stage or the poll; true when shown there.
 * @param {ErrorOut} msg
 * @returns {boolean}
 */
function onError(msg) {
  return chat.takeError(msg) || ask.takeError(msg) || turn.takeError(msg) || polls.takeError(msg);
}

function onSignalingChange() {
  live.syncHls();
  if (signaling.over && subscription.pc) {
    subscription.close();
    subscription.media = "closed";
    live.setLive(false); // a live slot falls back to its recording, which keeps playing
  }
  if (signaling.over) {
    turn.end();
    stage.stage = null;
  }
  player.decide();
  render();
}

// --- stats poller --------------------------------------------------------------------------

poll(async () => {
  live.countHls();
  const slots = await subscription.inbound();
  if (slots && ladder.trying) {
    ladder.trial(slots);
  } else if (slots) {
    live.count(slots);
    stage.count(slots);
    watchStall();
  }
  await turn.publisher.poll();
  player.decide();
  render();
  renderRate();
});

// Freeze detection and switching do not wait on getStats().
setInterval(() => {
  player.decide();
  render();
}, DECIDE_INTERVAL_MS);

// --- start ---------------------------------------------------------------------------------

roomEl.textContent = signaling.room || "—";
startPage(signaling, { path: "/learn", render });
