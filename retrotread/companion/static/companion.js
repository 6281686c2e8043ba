// retrotread companion page: shows what the server's presentation says, speaks what the
// session says, and sends STOP / PAUSE / READY / START (after a 2-second hold).
// No libraries, nothing fetched from the internet.
"use strict";
(function () {
  const LOST_AFTER_MS = 1200;   // no news this long: "connection lost" over everything
  const HOLD_MS = 2000;         // hold-to-start
  const token = new URLSearchParams(location.search).get("t") || "";
  const $ = (id) => document.getElementById(id);
  let ws = null, lastNews = 0, retryMs = 250, nextId = 1;
  let soundOn = false, lastCountdown = null, view = null, ended = false;

  // ---------------------------------------------------------------- connection
  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    ws = new WebSocket(`${scheme}://${location.host}/ws?t=${encodeURIComponent(token)}`);
    ws.onopen = () => { retryMs = 250; };
    ws.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      lastNews = Date.now();
      if (message.type === "state") render(message);
      else if (message.type === "say") say(message.text, message.level);
      else if (message.type === "ack") document.body.dataset.lastAck =
        `${message.command}:${message.accepted}`;
      else if (message.type === "end") {
        ended = true;
        text("ended-text", view && view.said ? view.said : "");
        $("ended").hidden = false;
        say("The workout is over.", "info");
      }
    };
    ws.onclose = () => { ws = null; if (ended) return; setLost(true); setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 2000); };
    ws.onerror = () => { try { ws.close(); } catch (e) { /* closing anyway */ } };
  }
  function send(command) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify({ command: command, id: nextId++ }));
    return true;
  }
  function setLost(lost) {
    if (ended) lost = false;
    show("lost", lost);
    if (document.body.classList.contains("stale") !== lost) document.body.classList.toggle("stale", lost);
  }
  setInterval(() => setLost(!ws || Date.now() - lastNews > LOST_AFTER_MS), 200);

  // ---------------------------------------------------------------- rendering
  function show(id, visible) { const el = $(id); if (el.hidden === visible) el.hidden = !visible; }
  function text(id, value) { const el = $(id); if (el.textContent !== value) el.textContent = value; }
  // "2.0 mph" -> a big "2.0" and a small "mph"
  function figure(id, value) {
    const el = $(id);
    if (el.dataset.v === value) return;
    el.dataset.v = value;
    const cut = value.lastIndexOf(" ");
    el.textContent = cut < 0 ? value : value.slice(0, cut);
    if (cut >= 0) { const u = document.createElement("small"); u.textContent = value.slice(cut); el.append(u); }
  }
  function render(message) {
    setLost(false);
    view = message.view;
    const note = message.speech_note;
    show("note", !!note);
    if (note) text("note", note);
    if (!view) { text("phase-text", "Connecting to the treadmill…"); return; }
    const body = document.body;
    const alert = view.alert;
    // One class list, written only when it changes (a change restyles the whole page).
    const classes = [`phase-${view.phase}`];
    if (view.face === "backward") classes.push("backward");
    if (view.turning) classes.push("turning");
    if (alert) classes.push(`alert-${alert.level}`);
    if (body.classList.contains("stale")) classes.push("stale");
    const wanted = classes.join(" ");
    if (body.className !== wanted) body.className = wanted;
    text("banner", view.banner || "");
    text("status", `${view.link_ok ? "link ok" : "LINK LOST"} · ${message.pages} screen${message.pages === 1 ? "" : "s"}`);
    text("arrow", view.face === "backward" ? "▼" : "▲");
    text("face-word", view.face_word);
    text("face-hint", view.face_hint);
    text("phase-text", view.phase_text);
    text("segment-label", view.segment_number ? `${view.segment_number}. ${view.segment_label}` : view.segment_label);
    figure("segment-left", view.segment_number ? `${view.segment_left} left` : "");
    const width = `${Math.round(view.segment_fraction * 1000) / 10}%`;
    if ($("segment-bar").style.width !== width) $("segment-bar").style.width = width;
    const next = $("next");
    if (view.next_label) {
      const way = view.face_next && view.face_next !== view.face ? ` (${view.face_next.toUpperCase()})` : "";
      next.innerHTML = "";
      next.append("Next: ");
      const b = document.createElement("b"); b.textContent = view.next_label + way; next.append(b);
      if (view.next_in) next.append(` in ${view.next_in}`);
    } else {
      next.textContent = view.segment_number ? `Last segment · workout left ${view.plan_left}` : "";
    }
    figure("current-mph", view.current ? view.current.mph : "--");
    text("current-kmh", view.current ? view.current.kmh : "--");
    figure("target-mph", view.target ? view.target.mph : "--");
    text("target-kmh", view.target ? view.target.kmh : "--");
    figure("heart", view.heart_rate);
    $("heart").classList.toggle("unknown", view.heart_rate === "unknown");
    text("said", alert && alert.level === "warning" ? alert.text
      : view.said ? `“${view.said}”` : "");
    const c = view.controls;
    show("stop", c.stop);
    show("pause", c.pause);
    show("ready", c.ready);
    show("hold-start", c.hold_start);
    // Countdown numerals fill the screen.
    const counting = view.countdown !== null && view.countdown !== undefined;
    show("countdown", counting);
    if (counting) {
      text("countdown-word", view.turning ? `TURNED? FACE ${view.face_word}` : view.face_word);
      text("countdown-number", String(view.countdown));
      if (view.countdown !== lastCountdown && !speechWorks()) beep(view.countdown);
    }
    lastCountdown = counting ? view.countdown : null;
    // Warnings and stops take over the screen (STOP stays on it).
    show("alert", !!alert && alert.level === "alarm");
    if (alert && alert.level === "alarm") {
      text("alert-title", view.phase === "paused" ? "PAUSED" : "STOPPING");
      text("alert-text", alert.text);
      $("alert-stop").hidden = !c.stop;
    }
  }

  // ---------------------------------------------------------------- voice
  function speechWorks() { return soundOn && "speechSynthesis" in window; }
  function say(words, level) {
    if (!speechWorks()) return;
    const u = new SpeechSynthesisUtterance(words);
    u.rate = 1.0; u.volume = 1.0;
    if (level === "alarm") speechSynthesis.cancel();
    speechSynthesis.speak(u);
  }
  let audio = null;
  function beep(count) {
    if (!soundOn) return;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = count <= 1 ? 1320 : 880;
      gain.gain.value = 0.3;
      osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + (count <= 1 ? 0.45 : 0.15));
    } catch (e) { /* no audio: the numerals are still on screen */ }
  }
  $("sound").addEventListener("click", () => {
    soundOn = true;
    $("sound").hidden = true;
    if ("speechSynthesis" in window) say("Sound is on.", "info");
    else beep(1);
  });

  // ---------------------------------------------------------------- buttons
  for (const [id, command] of [["stop", "stop"], ["alert-stop", "stop"], ["pause", "pause"], ["ready", "ready"]]) {
    $(id).addEventListener("pointerdown", (e) => { e.preventDefault(); send(command); });
  }
  // Hold-to-start: only a 2-second hold sends START; a tap or a slip sends nothing.
  const start = $("hold-start");
  let holdTimer = null;
  function cancelHold() {
    if (holdTimer !== null) clearTimeout(holdTimer);
    holdTimer = null;
    start.classList.remove("holding");
  }
  start.addEventListener("pointerdown", (e) => {
    e.preventDefault();
    cancelHold();
    start.classList.add("holding");
    holdTimer = setTimeout(() => { holdTimer = null; start.classList.remove("holding"); send("start"); }, HOLD_MS);
  });
  for (const type of ["pointerup", "pointerleave", "pointercancel"]) start.addEventListener(type, cancelHold);
  start.addEventListener("contextmenu", (e) => e.preventDefault());

  setLost(true);
  connect();
})();
