// Parley web client: speaks only the public protocol (docs/protocol.md).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    token: null, me: null, ws: null, nextId: 1, pending: new Map(),
    convs: new Map(), active: null, messages: new Map(), lastSeq: new Map(),
    presence: new Map(), names: new Map(), backoff: 250, embed: null, typingTimers: new Map(), lastTyping: 0,
    lang: "en", replyTo: null, mentions: new Map(), jumpTo: null, forwarding: null, status: "connecting",
  };

  // ---- words: one catalog per language (i18n.js), chosen from the
  // browser's language unless the user picked one; dates in that locale.
  const I18N = window.PARLEY_I18N || { en: {} };
  function pickLang() {
    const saved = localStorage.getItem("parley.lang");
    if (saved && I18N[saved]) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const base = String(l).toLowerCase().split("-")[0];
      if (I18N[base]) return base;
    }
    return "en";
  }
  function t(key, vars = {}) {
    const s = (I18N[state.lang] || {})[key] || I18N.en[key] || key;
    return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] !== undefined ? String(vars[k]) : `{${k}}`));
  }
  function applyI18n() {
    document.documentElement.lang = state.lang;
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
    for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    $("lang").value = state.lang;
    setStatus(state.status);
    const c = state.active && state.convs.get(state.active);
    if (c) $("conv-title").textContent = titleOf(c);
    renderList();
    if (state.active) renderMessages();
  }
  const timeFmt = () => new Intl.DateTimeFormat(state.lang, { hour: "2-digit", minute: "2-digit" });
  const dayKey = (d) => new Date(d).toDateString();
  function dayName(d) {
    const day = new Date(d); const today = new Date();
    const yesterday = new Date(); yesterday.setDate(today.getDate() - 1);
    if (day.toDateString() === today.toDateString()) return t("date.today");
    if (day.toDateString() === yesterday.toDateString()) return t("date.yesterday");
    return new Intl.DateTimeFormat(state.lang, { day: "numeric", month: "long", year: "numeric" }).format(day);
  }
  function sizeText(n) {
    const f = (x) => new Intl.NumberFormat(state.lang, { maximumFractionDigits: 1 }).format(x);
    if (n < 1024) return t("size.b", { n: f(n) });
    if (n < 1024 * 1024) return t("size.kb", { n: f(n / 1024) });
    return t("size.mb", { n: f(n / 1024 / 1024) });
  }

  // ---- sign-in: a token in the fragment (never sent to servers) or the dev form
  function takeToken() {
    const h = new URLSearchParams(location.hash.slice(1));
    const t = h.get("token");
    if (t) {
      sessionStorage.setItem("parley.token", t);
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("parley.token");
  }

  async function devSignin(name) {
    const r = await fetch("/v1/dev/signin", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ name }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error(body.message || r.statusText);
    sessionStorage.setItem("parley.token", body.token);
    return body.token;
  }

  // ---- connection with resume
  // Known states are words of the catalog (data-state keeps the state);
  // anything else is an error text shown as it is.
  function setStatus(s) {
    const el = $("status"); state.status = s;
    const known = (I18N.en || {})[`status.${s}`] !== undefined;
    el.textContent = known ? t(`status.${s}`) : s; el.className = s; el.dataset.state = s;
  }

  function request(type, fields = {}) {
    return new Promise((resolve, reject) => {
      if (!state.ws || state.ws.readyState !== 1) { reject(new Error("not connected")); return; }
      const id = String(state.nextId++);
      state.pending.set(id, { resolve, reject });
      state.ws.send(JSON.stringify({ id, type, ...fields }));
    });
  }

  // The session token never goes into a URL (access logs, history): the
  // WebSocket opens with a single-use ticket taken just before.
  async function ticket() {
    const r = await fetch("/v1/ws-tickets", { method: "POST", headers: { authorization: `Bearer ${state.token}` } });
    if (r.status === 401 || r.status === 403) return null;
    if (!r.ok) throw new Error(`ticket: HTTP ${r.status}`);
    return (await r.json()).ticket;
  }

  function retry() {
    setStatus("reconnecting");
    setTimeout(connect, state.backoff);
    state.backoff = Math.min(state.backoff * 2, 5000);
  }

  function signedOut() {
    sessionStorage.removeItem("parley.token");
    setStatus("signed out");
  }

  async function connect() {
    setStatus(state.ws ? "reconnecting" : "connecting");
    let t;
    try { t = await ticket(); } catch (_) { retry(); return; }
    if (!t) { signedOut(); return; }
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws?ticket=${encodeURIComponent(t)}`);
    state.ws = ws;
    ws.onmessage = (e) => onFrame(JSON.parse(e.data));
    ws.onclose = (e) => {
      for (const p of state.pending.values()) p.reject(new Error("disconnected"));
      state.pending.clear();
      if (e.code === 4003 || e.code === 4001) { signedOut(); return; }
      retry();
    };
  }

  async function onReady(ready) {
    state.me = ready.user_id;
    state.sessionId = ready.session_id;
    $("me").textContent = ready.user_id;
    state.backoff = 250;
    const since = {};
    for (const [c, s] of state.lastSeq) since[c] = s;
    if (Object.keys(since).length) {
      // Events that arrive before the result are applied in seq order by onEvent's dedup.
      const r = await request("resume", { conversations: since }).catch(() => null);
      // More was missed than the server replays: read it as history.
      for (const c of (r && r.truncated) || []) catchUp(c, since[c]);
    }
    setStatus("live");
    await loadConversations();
    pushButton();
  }

  // ---- Web Push: a service worker shows what the server pushes while the
  // user has no session. Asking needs a click; once allowed, every start
  // registers the browser's subscription again (it may have changed).
  function b64urlBytes(s) {
    const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - s.length % 4) % 4));
    return Uint8Array.from(b, (ch) => ch.charCodeAt(0));
  }

  function pushState(st) {
    state.push = st;
    document.body.dataset.push = st;
    const b = $("push");
    b.dataset.i18n = st === "on" ? "push.on" : st === "denied" ? "push.denied"
      : st === "unavailable" ? "push.unavailable" : "push.enable";
    b.textContent = t(b.dataset.i18n);
    b.disabled = st !== "off";
  }

  function pushButton() {
    if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) return;
    $("push").hidden = false;
    if (state.push) return;
    if (Notification.permission === "granted") enablePush();
    else pushState(Notification.permission === "denied" ? "denied" : "off");
  }

  async function enablePush() {
    try {
      const reg = await navigator.serviceWorker.register("/sw.js");
      let sub = await reg.pushManager.getSubscription();
      if (!sub) {
        const k = await (await fetch("/v1/push/vapid-key")).json();
        sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64urlBytes(k.public_key) });
      }
      const r = await fetch("/v1/me/push-subscriptions", {
        method: "POST",
        headers: { authorization: `Bearer ${state.token}`, "content-type": "application/json" },
        body: JSON.stringify(sub.toJSON()),
      });
      pushState(r.ok ? "on" : "unavailable");
    } catch (err) {
      console.warn("push:", err && err.message);
      pushState(Notification.permission === "denied" ? "denied" : "unavailable");
    }
  }

  function onFrame(f) {
    if (f.type === "ready") { onReady(f); return; }
    if (f.type === "result" || f.type === "pong") {
      const p = state.pending.get(f.id); state.pending.delete(f.id);
      if (p) p.resolve(f.result); return;
    }
    if (f.type === "error") {
      const p = f.id && state.pending.get(f.id); if (f.id) state.pending.delete(f.id);
      if (p) p.reject(new Error(`${f.code}: ${f.message}`)); else console.warn(f.code, f.message);
      return;
    }
    if (f.type === "event") onEvent(f);
  }

  // ---- events: each history event applied once, by seq
  function onEvent(e) {
    const c = e.conversation_id;
    if (e.seq !== undefined) state.lastSeq.set(c, Math.max(e.seq, state.lastSeq.get(c) || 0));
    switch (e.event) {
      case "message.created": case "message.edited": {
        const known = msgs(c).get(e.message.id);
        // Shown once: a replayed creation, or an older edit, changes nothing.
        if (known && (e.event === "message.created" || (known._ver || 0) >= e.seq)) return;
        msgs(c).set(e.message.id, { ...(known || {}), ...e.message, _ver: e.seq, _asOf: e.seq });
        ensureNames([e.message.author_id, ...(e.message.mentions || [])]);
        if (e.event === "message.created" && state.convs.has(c)) state.convs.get(c).last = preview(e.message);
        if (e.event === "message.created" && e.message.author_id !== state.me && c !== state.active) {
          const conv = state.convs.get(c);
          if (conv) {
            conv.unread = (conv.unread || 0) + 1;
            if (mentionsMe(e.message)) conv.unread_mentions = (conv.unread_mentions || 0) + 1;
          }
        }
        if (c === state.active) { renderMessages(); markRead(); }
        if (!state.convs.has(c)) loadConversations(); else renderList();
        break;
      }
      case "message.deleted": {
        const m = msgs(c).get(e.message_id); if (m) { m.deleted = true; m.text = ""; m.attachments = []; }
        if (c === state.active) renderMessages();
        break;
      }
      case "member.added": case "member.removed":
        ensureNames([e.user_id, e.by]);
        loadConversations();
        // The history has a line for it: read it from there.
        if (c === state.active) catchUp(c, e.seq - 1, e.seq + 1);
        break;
      case "conversation.updated": {
        const conv = state.convs.get(c);
        if (conv) { conv.title = e.title; conv.description = e.description; conv.picture = e.picture; renderList(); }
        if (c === state.active && conv) { showHead(conv); catchUp(c, e.seq - 1, e.seq + 1); }
        break;
      }
      case "reaction.added": case "reaction.removed": {
        const m = msgs(c).get(e.message_id);
        // Each change once: not one the history already counted, nor a replay.
        if (!m || (m._asOf || 0) >= e.seq) break;
        m._asOf = e.seq;
        const rs = m.reactions || (m.reactions = []);
        let r = rs.find((x) => x.emoji === e.emoji);
        if (!r) { r = { emoji: e.emoji, count: 0, mine: false }; rs.push(r); }
        r.count += e.event === "reaction.added" ? 1 : -1;
        if (e.user_id === state.me) r.mine = e.event === "reaction.added";
        m.reactions = rs.filter((x) => x.count > 0);
        if (c === state.active) renderMessages();
        break;
      }
      case "action.chosen": {
        const m = msgs(c).get(e.message_id); if (m) m.chosen = e.choice;
        if (c === state.active) renderMessages();
        break;
      }
      case "typing": showTyping(c, e.user_id); break;
      case "presence": state.presence.set(e.user_id, e.online); renderList(); break;
      case "read": break;
      case "notification": console.info("notification", e.data); break;
      case "gap": catchUp(c, e.after_seq, e.before_seq); break;
      case "call.ringing": case "call.updated": case "call.ended":
      case "call.ringing_stopped": case "call.signal": onCallEvent(e); break;
    }
  }

  // ---- calls (docs/calls.md): ringing, one RTCPeerConnection per call
  // between this session and the other participant's, signaling relayed by
  // the server to that session only.
  function icePolicy() { return sessionStorage.getItem("parley.icePolicy") || "all"; }

  function showIncoming(call) {
    state.ringing = call;
    $("incoming-text").textContent = t("call.from", { kind: t(`call.kind.${call.media === "video" ? "video" : "audio"}`), name: nameOf(call.started_by) });
    $("incoming").hidden = false;
  }

  function stopRinging(id) {
    if (state.ringing && (!id || state.ringing.id === id)) { state.ringing = null; $("incoming").hidden = true; }
  }

  async function startCall(media) {
    if (!state.active || state.call) return;
    const joined = await request("call.start", { conversation_id: state.active, media }).catch((e) => { setStatus(e.message); return null; });
    if (!joined) return;
    if (joined.call.outcome) { setStatus(`call: ${joined.call.outcome}`); return; }
    await setupCall(joined, "caller");
  }

  async function acceptCall() {
    const call = state.ringing; stopRinging();
    if (!call || state.call) return;
    const joined = await request("call.accept", { call_id: call.id }).catch((e) => { setStatus(e.message); return null; });
    if (joined) await setupCall(joined, "callee");
  }

  async function declineCall() {
    const call = state.ringing; stopRinging();
    if (call) await request("call.decline", { call_id: call.id }).catch(() => null);
  }

  async function setupCall(joined, role) {
    if (joined.room) return setupGroupCall(joined);
    const call = joined.call;
    const pc = new RTCPeerConnection({ iceServers: joined.ice_servers, iceTransportPolicy: icePolicy() });
    // `ready` once the local tracks are in: signals that come earlier wait.
    const c = { id: call.id, media: call.media, role, pc, peer: null, pendingIce: [], queued: [], ready: false, offered: false };
    state.call = c;
    window.parleyCall = c;
    $("call").hidden = false; $("call-status").textContent = t(role === "caller" ? "call.calling" : "call.connecting");
    c.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.media === "video" });
    $("local-video").srcObject = c.local;
    for (const t of c.local.getTracks()) pc.addTrack(t, c.local);
    pc.onicecandidate = (ev) => { if (ev.candidate) signal(c, { candidate: ev.candidate.toJSON() }); };
    pc.ontrack = (ev) => {
      const stream = ev.streams[0];
      if (!c.remoteStream || c.remoteStream.id === stream.id) { c.remoteStream = stream; $("remote-video").srcObject = stream; }
      else { $("remote-screen").srcObject = stream; $("remote-screen").hidden = false; }
    };
    pc.onconnectionstatechange = () => { $("call-status").textContent = pc.connectionState; };
    // Renegotiation (a screen shared by the caller later) goes by the same
    // path as the first offer.
    pc.onnegotiationneeded = async () => { if (c.ready && c.peer && c.offered && c.role === "caller") await offer(c); };
    peerFrom(call);
    c.ready = true;
    if (c.peer && role === "caller" && !c.offered) await offer(c);
    for (const e of c.queued.splice(0)) onSignal(c, e);
  }

  // The other participant's session, once it is in the call.
  function peerFrom(call) {
    const c = state.call; if (!c || c.peer) return;
    const other = (call.participants || []).find((p) => p.user_id !== state.me);
    if (other) c.peer = other.session_id;
  }

  function signal(c, body) {
    if (!c.peer) { c.pendingIce.push(body); return; }
    request("call.signal", { call_id: c.id, to_session: c.peer, ...body }).catch((e) => console.warn("signal", e.message));
  }

  // Resolves when no offer/answer exchange is under way.
  function stable(pc) {
    if (pc.signalingState === "stable" || pc.signalingState === "closed") return Promise.resolve();
    return new Promise((resolve) => {
      const f = () => {
        if (pc.signalingState === "stable" || pc.signalingState === "closed") {
          pc.removeEventListener("signalingstatechange", f); resolve();
        }
      };
      pc.addEventListener("signalingstatechange", f);
    });
  }

  // Offers one at a time, each once the previous exchange is complete (a
  // renegotiation for a shared screen may be asked for while one runs).
  function offer(c) {
    c.offered = true;
    c.offers = (c.offers || Promise.resolve()).then(async () => {
      await stable(c.pc);
      if (c.pc.signalingState === "closed") return;
      const o = await c.pc.createOffer(); await c.pc.setLocalDescription(o);
      signal(c, { sdp: c.pc.localDescription.toJSON() });
      for (const b of c.pendingIce.splice(0)) signal(c, b);
    }).catch((e) => console.warn("offer", e.message));
    return c.offers;
  }

  // Signals are applied in the order they came, one at a time.
  function onSignal(c, e) {
    c.signals = (c.signals || Promise.resolve()).then(() => applySignal(c, e))
      .catch((err) => console.warn("signal", err.message));
    return c.signals;
  }

  async function applySignal(c, e) {
    if (!c.ready) { c.queued.push(e); return; }
    if (c.pc.signalingState === "closed") return;
    if (!c.peer) c.peer = e.from_session;
    if (e.sdp) {
      await c.pc.setRemoteDescription(e.sdp);
      if (e.sdp.type === "offer") {
        const a = await c.pc.createAnswer(); await c.pc.setLocalDescription(a);
        signal(c, { sdp: c.pc.localDescription.toJSON() });
      }
      for (const cand of c.remoteIce || []) await c.pc.addIceCandidate(cand).catch(() => null);
      c.remoteIce = [];
      for (const b of c.pendingIce.splice(0)) signal(c, b);
    } else if (e.candidate) {
      if (c.pc.remoteDescription) await c.pc.addIceCandidate(e.candidate).catch(() => null);
      else (c.remoteIce = c.remoteIce || []).push(e.candidate);
    }
  }

  async function shareScreen() {
    const c = state.call; if (!c) return;
    const s = await navigator.mediaDevices.getDisplayMedia({ video: true });
    c.screen = s;
    for (const t of s.getTracks()) {
      c.pc.addTrack(t, s);
      // The browser's own "stop sharing" ends the track.
      t.onended = () => request("call.screen", { call_id: c.id, sharing: false }).catch(() => null);
    }
    if (c.role !== "caller") await offer(c);
    await request("call.screen", { call_id: c.id, sharing: true }).catch(() => null);
  }

  // ---- group calls: a Janus VideoRoom, spoken to over Janus's HTTP API.
  // This session publishes its camera and microphone and subscribes to
  // every other publisher (one RTCPeerConnection each).
  async function janus(c, path, body) {
    const r = await fetch(`${c.room.server}${path}`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ transaction: Math.random().toString(36).slice(2), ...body }),
    });
    const v = await r.json();
    if (v.janus === "error") throw new Error(`janus: ${v.error && v.error.reason}`);
    return v;
  }

  async function setupGroupCall(joined) {
    const call = joined.call;
    const c = { id: call.id, media: call.media, group: true, room: joined.room, ice: joined.ice_servers, subs: new Map(), handles: new Map() };
    state.call = c; window.parleyCall = c;
    $("call").hidden = false; $("tiles").hidden = false; $("remote-video").hidden = true;
    $("call-status").textContent = t("call.joining");
    c.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: call.media === "video" });
    $("local-video").srcObject = c.local;
    c.session = (await janus(c, "", { janus: "create" })).data.id;
    poll(c);
    c.pubHandle = (await janus(c, `/${c.session}`, { janus: "attach", plugin: "janus.plugin.videoroom" })).data.id;
    c.handles.set(c.pubHandle, { kind: "publisher" });
    await janus(c, `/${c.session}/${c.pubHandle}`, {
      janus: "message", body: { request: "join", ptype: "publisher", room: c.room.room, pin: c.room.pin, display: state.me },
    });
  }

  function newPc(c) {
    return new RTCPeerConnection({ iceServers: c.ice, iceTransportPolicy: icePolicy() });
  }

  function trickle(c, handle, pc) {
    pc.onicecandidate = (ev) => {
      const candidate = ev.candidate ? ev.candidate.toJSON() : { completed: true };
      janus(c, `/${c.session}/${handle}`, { janus: "trickle", candidate }).catch(() => null);
    };
  }

  async function publish(c) {
    const pc = newPc(c); c.pc = pc;
    for (const t of c.local.getTracks()) pc.addTrack(t, c.local);
    trickle(c, c.pubHandle, pc);
    pc.onconnectionstatechange = () => { $("call-status").textContent = pc.connectionState; };
    const offer = await pc.createOffer(); await pc.setLocalDescription(offer);
    await janus(c, `/${c.session}/${c.pubHandle}`, {
      janus: "message", body: { request: "configure", audio: true, video: c.media === "video" }, jsep: pc.localDescription.toJSON(),
    });
  }

  async function subscribe(c, feed) {
    if (c.subs.has(feed)) return;
    c.subs.set(feed, {});
    const handle = (await janus(c, `/${c.session}`, { janus: "attach", plugin: "janus.plugin.videoroom" })).data.id;
    c.handles.set(handle, { kind: "subscriber", feed });
    c.subs.get(feed).handle = handle;
    await janus(c, `/${c.session}/${handle}`, {
      janus: "message", body: { request: "join", ptype: "subscriber", room: c.room.room, pin: c.room.pin, feed },
    });
  }

  function dropFeed(c, feed) {
    const s = c.subs.get(feed); if (!s) return;
    c.subs.delete(feed);
    if (s.pc) s.pc.close();
    if (s.video) s.video.remove();
    if (s.handle) janus(c, `/${c.session}/${s.handle}`, { janus: "detach" }).catch(() => null);
  }

  // Janus's events for the session (HTTP long poll), until the call ends.
  async function poll(c) {
    while (state.call === c) {
      let evs;
      try {
        const r = await fetch(`${c.room.server}/${c.session}?maxev=10&rid=${Date.now()}`);
        evs = await r.json();
      } catch (_) { await new Promise((r) => setTimeout(r, 500)); continue; }
      for (const e of Array.isArray(evs) ? evs : [evs]) await onJanus(c, e).catch((err) => console.warn("janus", err.message));
    }
  }

  async function onJanus(c, e) {
    if (state.call !== c || e.janus !== "event") return;
    const h = c.handles.get(e.sender); if (!h) return;
    const d = (e.plugindata && e.plugindata.data) || {};
    if (h.kind === "publisher") {
      if (d.videoroom === "joined") {
        await publish(c);
        for (const p of d.publishers || []) await subscribe(c, p.id);
      } else if (d.videoroom === "event") {
        for (const p of d.publishers || []) await subscribe(c, p.id);
        if (d.leaving) dropFeed(c, d.leaving);
        if (d.unpublished && d.unpublished !== "ok") dropFeed(c, d.unpublished);
      }
      if (e.jsep && e.jsep.type === "answer") await c.pc.setRemoteDescription(e.jsep);
    } else if (e.jsep && e.jsep.type === "offer") {
      const s = c.subs.get(h.feed); if (!s) return;
      const pc = newPc(c); s.pc = pc;
      const handle = s.handle;
      trickle(c, handle, pc);
      pc.ontrack = (ev) => {
        if (!s.video) {
          s.video = document.createElement("video");
          s.video.autoplay = true; s.video.playsInline = true; s.video.dataset.feed = String(h.feed);
          $("tiles").append(s.video);
        }
        s.video.srcObject = ev.streams[0];
      };
      await pc.setRemoteDescription(e.jsep);
      const answer = await pc.createAnswer(); await pc.setLocalDescription(answer);
      await janus(c, `/${c.session}/${handle}`, { janus: "message", body: { request: "start", room: c.room.room }, jsep: pc.localDescription.toJSON() });
    }
  }

  function endCall() {
    const c = state.call; state.call = null;
    if (!c) return;
    if (c.group) {
      for (const feed of [...c.subs.keys()]) dropFeed(c, feed);
      if (c.session) janus(c, `/${c.session}`, { janus: "destroy" }).catch(() => null);
      $("tiles").hidden = true; $("remote-video").hidden = false;
    }
    if (c.pc) c.pc.close();
    for (const s of [c.local, c.screen]) if (s) for (const t of s.getTracks()) t.stop();
    $("call").hidden = true; $("remote-screen").hidden = true;
    for (const v of ["local-video", "remote-video", "remote-screen"]) $(v).srcObject = null;
  }

  async function hangup() {
    const c = state.call; if (!c) return;
    endCall();
    await request("call.hangup", { call_id: c.id }).catch(() => null);
  }

  async function onCallEvent(e) {
    switch (e.event) {
      case "call.ringing": if (!state.call) showIncoming(e.call); break;
      case "call.ringing_stopped": if (e.session_id !== state.sessionId) stopRinging(e.call_id); break;
      case "call.updated": {
        const c = state.call;
        if (c && c.id === e.call.id) {
          const sharing = e.call.participants.filter((p) => p.screen && p.user_id !== state.me);
          $("call-status").textContent = sharing.length ? t("call.sharing", { names: sharing.map((p) => nameOf(p.user_id)).join(", ") }) : (c.pc ? c.pc.connectionState : "");
        }
        if (c && c.id === e.call.id && !c.peer) {
          peerFrom(e.call);
          if (c.peer && c.role === "caller" && c.ready && !c.offered) await offer(c);
        }
        break;
      }
      case "call.ended": stopRinging(e.call.id); if (state.call && state.call.id === e.call.id) endCall(); break;
      case "call.signal": {
        const c = state.call;
        if (c && c.id === e.call_id) await onSignal(c, e);
        break;
      }
    }
  }

  // Messages the server could not replay (more than ws.resume_max_events
  // were missed): read them with history, page by page, up to `before`.
  async function catchUp(c, after, before) {
    for (;;) {
      const page = await request("history", { conversation_id: c, after, limit: 100 }).catch(() => null);
      if (!page || !page.messages.length) break;
      let reached = !page.has_more;
      for (const m of page.messages) {
        if (before !== undefined && m.seq >= before) { reached = true; break; }
        if (!msgs(c).has(m.id)) msgs(c).set(m.id, { ...m, _asOf: state.lastSeq.get(c) || 0 });
        after = m.seq;
      }
      ensureNames(page.messages.map((m) => m.author_id));
      if (reached) break;
    }
    if (c === state.active) renderMessages();
    renderList();
  }

  const NIL = "00000000-0000-0000-0000-000000000000";

  // Names of users, fetched once per user.
  async function ensureNames(ids) {
    // The nil UUID authors the lines of changes the application made.
    const missing = [...new Set(ids)].filter((id) => id && id !== NIL && !state.names.has(id));
    if (!missing.length) return;
    for (const id of missing) state.names.set(id, null);
    const r = await request("users.get", { user_ids: missing }).catch(() => null);
    if (!r) { for (const id of missing) state.names.delete(id); return; }
    for (const u of r.users) state.names.set(u.id, u.full_name || u.name);
    renderList(); if (state.active) renderMessages();
  }
  const nameOf = (id) => state.names.get(id) || (id ? id.slice(0, 8) : "");

  const msgs = (c) => { if (!state.messages.has(c)) state.messages.set(c, new Map()); return state.messages.get(c); };

  // ---- conversations
  async function loadConversations() {
    if (state.embed) return;
    const page = await request("conversations.list", { displayed: true, limit: 200 }).catch(() => null);
    if (!page) return;
    for (const c of page.conversations) {
      state.convs.set(c.id, c);
      if (!state.lastSeq.has(c.id)) state.lastSeq.set(c.id, c.last_seq);
    }
    // The last message of each, for the list.
    await Promise.all(page.conversations.map(async (c) => {
      const h = await request("history", { conversation_id: c.id, limit: 1 }).catch(() => null);
      const m = h && h.messages[h.messages.length - 1];
      if (m) state.convs.get(c.id).last = preview(m);
    }));
    const others = [...state.convs.values()].filter((c) => c.kind === "dialog").map((c) => c.id);
    if (others.length) {
      const ids = [];
      for (const id of others) {
        const full = await request("conversation.get", { conversation_id: id }).catch(() => null);
        if (full) { state.convs.set(id, { ...state.convs.get(id), members: full.members });
          for (const m of full.members) if (m !== state.me) ids.push(m); }
      }
      ensureNames(ids);
      const p = await request("presence.get", { user_ids: ids }).catch(() => null);
      if (p) for (const [u, on] of Object.entries(p.users)) state.presence.set(u, on);
    }
    renderList();
  }

  function titleOf(c) {
    if (c.kind === "dialog") {
      const other = (c.members || []).find((m) => m !== state.me);
      return t("conv.dialog", { name: nameOf(other) });
    }
    return c.title || (c.object_ref ? t("conv.about", { object: c.object_ref }) : t("conv.untitled"));
  }

  function renderList() {
    const ul = $("conversations"); ul.textContent = "";
    for (const c of state.convs.values()) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.dataset.id = c.id;
      if (c.id === state.active) b.setAttribute("aria-current", "true");
      if (c.kind === "dialog") {
        const other = (c.members || []).find((m) => m !== state.me);
        const dot = document.createElement("span");
        dot.className = "dot" + (state.presence.get(other) ? " on" : "");
        dot.title = t(state.presence.get(other) ? "conv.online" : "conv.offline");
        b.append(dot);
      }
      const title = el("span", "title", titleOf(c));
      if (c.last) title.append(el("small", "last", c.last));
      b.append(title);
      if (c.unread_mentions) { const u = el("span", "unread-mentions", "@"); u.title = t("conv.unreadMentions"); b.append(u); }
      if (c.unread) { const u = document.createElement("span"); u.className = "unread"; u.textContent = c.unread; b.append(u); }
      b.onclick = () => open(c.id);
      li.append(b); ul.append(li);
    }
  }

  async function open(id) {
    state.active = id;
    document.querySelector("main").classList.add("in-conversation");
    document.body.classList.add("in-conversation");
    const c = state.convs.get(id);
    showHead(c);
    cancelReply(); state.mentions.clear();
    $("composer").hidden = false;
    $("call-buttons").hidden = false;
    const page = await request("history", { conversation_id: id, limit: 50 }).catch(() => null);
    if (page) for (const m of page.messages) msgs(id).set(m.id, { ...m, _asOf: state.lastSeq.get(id) || 0 });
    if (page) ensureNames(page.messages.flatMap((m) => [m.author_id, ...(m.mentions || [])]));
    if (c && !c.members) {
      const full = await request("conversation.get", { conversation_id: id }).catch(() => null);
      if (full) c.members = full.members;
    }
    renderMessages(true);
    markRead();
    renderList();
  }

  // The conversation's title, picture and the buttons its kind allows.
  function showHead(c) {
    $("conv-title").textContent = c ? titleOf(c) : t("conv.label");
    $("conv-buttons").hidden = !c || c.kind !== "group";
    $("add-member").hidden = true;
    const img = $("conv-picture");
    img.hidden = true;
    if (c && c.picture) fileLink(c.picture, true).then((u) => { img.src = u; img.hidden = false; }).catch(() => {});
  }

  async function olderHistory() {
    const id = state.active; if (!id) return;
    const list = [...msgs(id).values()].sort((a, b) => a.seq - b.seq);
    if (!list.length) return;
    const page = await request("history", { conversation_id: id, before: list[0].seq, limit: 50 }).catch(() => null);
    if (!page || !page.messages.length) return;
    const box = $("messages"); const before = box.scrollHeight;
    for (const m of page.messages) msgs(id).set(m.id, { ...m, _asOf: state.lastSeq.get(id) || 0 });
    renderMessages(); box.scrollTop = box.scrollHeight - before;
  }

  function markRead() {
    const c = state.convs.get(state.active); if (!c) return;
    const seq = state.lastSeq.get(state.active) || 0;
    c.unread = 0; c.unread_mentions = 0;
    request("read", { conversation_id: state.active, seq }).catch(() => {});
  }

  const mentionsMe = (m) => m.author_id !== state.me && (m.mention_all || (m.mentions || []).includes(state.me));
  const preview = (m) => (m.deleted ? t("conv.lastDeleted") : (m.kind === "system" ? systemText(m) : m.text));
  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };

  function renderMessages(scroll) {
    const box = $("messages"); const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    box.textContent = "";
    const list = [...msgs(state.active).values()].sort((a, b) => a.seq - b.seq);
    let lastDay = null; let lastSeq = null;
    for (const m of list) {
      if (m.seq === lastSeq) continue; // one entry per seq
      lastSeq = m.seq;
      const day = dayKey(m.created_at);
      if (day !== lastDay) {
        lastDay = day;
        const sep = el("li", "separator", dayName(m.created_at)); sep.setAttribute("role", "separator");
        box.append(sep);
      }
      box.append(messageItem(m));
    }
    const target = state.jumpTo && box.querySelector(`li[data-id="${state.jumpTo}"]`);
    if (target) {
      state.jumpTo = null;
      target.classList.add("found");
      target.scrollIntoView({ block: "center" });
    } else if (scroll || atBottom) box.scrollTop = box.scrollHeight;
  }

  // Text with the @mentions of the message marked.
  function textWithMentions(m) {
    const div = el("div", "text");
    const names = (m.mentions || []).map((id) => nameOf(id)).filter(Boolean);
    if (m.mention_all) names.push("all", t("msg.mentionAll"));
    if (!names.length) { div.textContent = m.text; return div; }
    const esc = names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).sort((a, b) => b.length - a.length);
    const re = new RegExp(`@(?:${esc.join("|")})`, "g");
    let at = 0;
    for (const hit of m.text.matchAll(re)) {
      div.append(document.createTextNode(m.text.slice(at, hit.index)));
      div.append(el("span", "mention", hit[0]));
      at = hit.index + hit[0].length;
    }
    div.append(document.createTextNode(m.text.slice(at)));
    return div;
  }

  function messageItem(m) {
    const li = el("li");
    li.dataset.seq = m.seq; li.dataset.id = m.id;
    if (m.author_id === state.me) li.classList.add("mine");
    if (m.deleted) li.classList.add("deleted");
    if (m.kind === "system") li.classList.add("system");
    if (mentionsMe(m)) li.classList.add("mentioned");
    const meta = el("div", "meta");
    const when = el("time", null, timeFmt().format(new Date(m.created_at)) + (m.edited_at ? ` ${t("msg.edited")}` : ""));
    when.dateTime = m.created_at;
    if (m.kind === "system") {
      li.append(el("div", "text", systemText(m)));
      meta.append(when); li.append(meta);
      return li;
    }
    meta.append(el("span", "author", m.author_id === state.me ? t("msg.you") : nameOf(m.author_id)), when);
    if (!m.deleted) {
      const button = (key, cls, on) => { const b = el("button", cls, t(key)); b.type = "button"; b.onclick = on; meta.append(b); };
      button("msg.reply", "reply", () => startReply(m));
      button("msg.react", "react", () => li.querySelector(".palette").toggleAttribute("hidden"));
      button("msg.forward", "forward", () => startForward(m));
      if (m.author_id === state.me) {
        button("msg.edit", "edit", () => editMessage(m));
        button("msg.delete", "delete", () => deleteMessage(m));
      }
    }
    li.append(meta);
    if (m.forwarded && !m.deleted) {
      const f = m.forwarded; ensureNames([f.author_id]);
      li.append(el("small", "forwarded", f.conversation_title
        ? t("msg.forwardedIn", { name: nameOf(f.author_id), title: f.conversation_title })
        : t("msg.forwarded", { name: nameOf(f.author_id) })));
    }
    if (m.reply_to) {
      const q = el("blockquote", "quote");
      q.append(el("strong", null, nameOf(m.reply_to.author_id)), document.createTextNode(" "),
        document.createTextNode(m.reply_to.deleted ? t("msg.deleted") : m.reply_to.text));
      q.onclick = () => jumpTo(m.conversation_id, m.reply_to.message_id);
      li.append(q);
    }
    li.append(m.deleted ? el("div", "text", t("msg.deleted")) : textWithMentions(m));
    for (const a of m.attachments || []) li.append(attachmentView(a));
    if ((m.actions || []).length && !m.deleted) li.append(actionRow(m));
    if (!m.deleted) {
      const row = el("div", "reactions");
      for (const r of m.reactions || []) {
        const b = el("button", "reaction" + (r.mine ? " mine" : ""), `${r.emoji} ${r.count}`);
        b.type = "button"; b.setAttribute("aria-pressed", String(r.mine));
        b.onclick = () => react(m, r.emoji, !r.mine);
        row.append(b);
      }
      const palette = el("span", "palette"); palette.hidden = true;
      for (const emoji of ["👍", "❤️", "😂", "🎉", "👀", "✅"]) {
        const b = el("button", "emoji", emoji); b.type = "button";
        b.onclick = () => { palette.hidden = true; const mine = (m.reactions || []).find((r) => r.emoji === emoji && r.mine); react(m, emoji, !mine); };
        palette.append(b);
      }
      row.append(palette);
      li.append(row);
    }
    return li;
  }

  function react(m, emoji, add) {
    request(add ? "reaction.add" : "reaction.remove", { conversation_id: m.conversation_id, message_id: m.id, emoji })
      .catch((e) => setStatus(e.message));
  }

  // A short-lived signed link for a file (no token in URLs). `inline`:
  // streamed through Parley, so that the page's own origin serves it.
  async function fileLink(id, inline) {
    const r = await fetch(`/v1/files/${id}/link`, { method: "POST", headers: { authorization: `Bearer ${state.token}` } });
    if (!r.ok) throw new Error(`file: HTTP ${r.status}`);
    const url = (await r.json()).url;
    return inline ? url + (url.includes("?") ? "&" : "?") + "redirect=false" : url;
  }

  function attachmentView(a) {
    const box = el("div", "file");
    if (String(a.content_type || "").startsWith("image/")) {
      const img = el("img", "inline-image"); img.alt = a.name; img.loading = "lazy";
      fileLink(a.id, true).then((u) => { img.src = u; }).catch(() => { img.remove(); });
      box.append(img);
    }
    const link = el("a", "attachment", t("msg.file", { name: a.name, size: sizeText(a.size) }));
    link.href = "#"; link.dataset.fileId = a.id; link.download = a.name;
    link.onclick = async (ev) => {
      ev.preventDefault();
      const url = await fileLink(a.id, false).catch((e) => { setStatus(e.message); return null; });
      if (!url) return;
      const go = document.createElement("a");
      go.href = url; go.download = a.name;
      document.body.append(go); go.click(); go.remove();
    };
    box.append(link);
    return box;
  }

  function actionRow(m) {
    const row = el("div", "actions");
    for (const a of m.actions) {
      const b = el("button", null, a.caption); b.type = "button";
      // A single-use question answered already shows the answer instead.
      b.disabled = Boolean(m.chosen && a.single_use);
      if (m.chosen && m.chosen.value === a.value) b.classList.add("chosen");
      b.onclick = () => request("action.invoke", { conversation_id: m.conversation_id, message_id: m.id, value: a.value })
        .catch((e) => setStatus(e.message));
      row.append(b);
    }
    if (m.chosen) {
      row.append(el("small", "chosen-by",
        `${nameOf(m.chosen.user_id)}: ${(m.actions.find((a) => a.value === m.chosen.value) || {}).caption || m.chosen.value}`));
    }
    return row;
  }

  // System messages carry structured data; the words are the client's.
  function systemText(m) {
    const d = m.data || {};
    if (d.member) {
      const x = d.member; ensureNames([x.user_id, x.by]);
      const user = nameOf(x.user_id);
      if (x.change === "left") return t("sys.left", { user });
      if (x.change === "added") return x.by ? t("sys.added", { by: nameOf(x.by), user }) : t("sys.addedByApp", { user });
      return x.by ? t("sys.removed", { by: nameOf(x.by), user }) : t("sys.removedByApp", { user });
    }
    if (d.conversation) {
      const x = d.conversation; const changed = x.changed || ["title"];
      if (x.by) ensureNames([x.by]);
      const app = !x.by; const by = app ? "" : nameOf(x.by);
      if (changed.includes("title")) return app ? t("sys.renamedByApp", { title: x.title }) : t("sys.renamed", { by, title: x.title });
      if (changed.includes("picture")) return app ? t("sys.pictureByApp") : t("sys.picture", { by });
      return app ? t("sys.describedByApp") : t("sys.described", { by });
    }
    const c = d.call;
    if (!c) return "";
    const media = c.media === "video" ? "video" : "audio";
    const kind = t(`call.kind.${media}`);
    const dur = (s) => `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
    switch (c.outcome) {
      case "completed": return t("call.completed", { kind, duration: dur(c.duration_secs || 0) });
      case "missed": return t(`call.missed.${media}`);
      case "declined": return t("call.declined", { kind });
      case "cancelled": return t("call.cancelled", { kind });
      case "busy": return t("call.busy", { kind });
      default: return kind;
    }
  }

  // ---- reply, forward, jump to a message
  function startReply(m) {
    state.replyTo = m;
    $("replying-text").textContent = `${t("composer.replyTo", { name: nameOf(m.author_id) })} ${m.text.slice(0, 80)}`;
    $("replying").hidden = false; $("text").focus();
  }
  function cancelReply() { state.replyTo = null; $("replying").hidden = true; }

  function startForward(m) {
    state.forwarding = m;
    const sel = $("forward-to"); sel.textContent = "";
    for (const c of state.convs.values()) {
      const o = el("option", null, titleOf(c)); o.value = c.id; sel.append(o);
    }
    $("forward-dialog").showModal();
  }
  async function forward() {
    const m = state.forwarding; const to = $("forward-to").value;
    $("forward-dialog").close(); state.forwarding = null;
    if (!m || !to) return;
    const sent = await request("message.send", { conversation_id: to, idempotency_key: crypto.randomUUID(),
      forward: { conversation_id: m.conversation_id, message_id: m.id } }).catch((e) => { setStatus(e.message); return null; });
    if (sent) { msgs(to).set(sent.id, sent); open(to); }
  }

  // Opens the conversation and shows the message, reading history around
  // it when it is not loaded yet.
  async function jumpTo(conv, id, seq) {
    if (state.active !== conv) await open(conv);
    if (!msgs(conv).has(id) && seq !== undefined) {
      const page = await request("history", { conversation_id: conv, after: Math.max(0, seq - 10), limit: 50 }).catch(() => null);
      if (page) for (const m of page.messages) msgs(conv).set(m.id, { ...m, _asOf: state.lastSeq.get(conv) || 0 });
    }
    state.jumpTo = id;
    renderMessages();
  }

  async function editMessage(m) {
    const text = prompt(t("msg.editPrompt"), m.text);
    if (text !== null && text.trim()) await request("message.edit", { conversation_id: m.conversation_id, message_id: m.id, text });
  }
  async function deleteMessage(m) {
    if (confirm(t("msg.deleteConfirm"))) await request("message.delete", { conversation_id: m.conversation_id, message_id: m.id });
  }

  function showTyping(c, user) {
    if (c !== state.active || user === state.me) return;
    $("typing").textContent = t("typing", { name: nameOf(user) });
    clearTimeout(state.typingTimers.get(c));
    state.typingTimers.set(c, setTimeout(() => { $("typing").textContent = ""; }, 3000));
  }

  // ---- sending, with an idempotency key so a retry never doubles a message
  async function send() {
    const text = $("text").value;
    const file = $("file").files[0];
    if (!text.trim() && !file) return;
    const key = crypto.randomUUID();
    const fields = { conversation_id: state.active, text, idempotency_key: key };
    if (state.replyTo) fields.reply_to = state.replyTo.id;
    // Mentions picked from the suggestions whose @name is still in the text.
    const picked = [...state.mentions].filter(([, name]) => text.includes(`@${name}`));
    const ids = picked.map(([id]) => id).filter((id) => id !== "all");
    if (ids.length) fields.mentions = ids;
    if (picked.some(([id]) => id === "all")) fields.mention_all = true;
    if (file) fields.attachments = [await upload(file)];
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const m = await request("message.send", fields);
        msgs(state.active).set(m.id, m);
        state.lastSeq.set(state.active, Math.max(m.seq, state.lastSeq.get(state.active) || 0));
        $("text").value = ""; $("file").value = "";
        cancelReply(); state.mentions.clear();
        renderMessages(true);
        return;
      } catch (e) {
        if (!String(e.message).startsWith("disconnected") && !String(e.message).startsWith("not connected")) { alert(e.message); return; }
        await new Promise((r) => setTimeout(r, 500 * (attempt + 1)));
      }
    }
  }

  async function sha256(file) {
    const buf = await file.arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", buf);
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function upload(file) {
    const auth = { authorization: `Bearer ${state.token}`, "content-type": "application/json" };
    const type = file.type || "application/octet-stream";
    const r = await fetch("/v1/files", { method: "POST", headers: auth,
      body: JSON.stringify({ conversation_id: state.active, name: file.name, size: file.size, content_type: type, sha256: await sha256(file) }) });
    const created = await r.json();
    if (!r.ok) throw new Error(created.message);
    const up = created.upload; const bar = $("progress"); bar.hidden = false; bar.value = 0;
    await new Promise((resolve, reject) => {
      const x = new XMLHttpRequest();
      x.open(up.method, up.url);
      for (const [k, v] of up.headers) if (k.toLowerCase() !== "content-length" && k.toLowerCase() !== "host") x.setRequestHeader(k, v);
      if (!up.direct) x.setRequestHeader("authorization", `Bearer ${state.token}`);
      x.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
      x.onload = () => (x.status < 300 ? resolve() : reject(new Error(x.responseText)));
      x.onerror = () => reject(new Error("upload failed"));
      x.send(file);
    });
    if (up.direct) await fetch(`/v1/files/${created.file.id}/complete`, { method: "POST", headers: auth });
    bar.hidden = true;
    return created.file.id;
  }

  // ---- people: the directory (users.search) behind every user picker
  const isId = (s) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
  async function findPeople(query) {
    if (!query.trim()) return [];
    const r = await request("users.search", { query, limit: 8 }).catch(() => null);
    const users = (r && r.users) || [];
    for (const u of users) state.names.set(u.id, u.full_name || u.name);
    return users.filter((u) => u.id !== state.me);
  }

  function showSuggestions(list, items, pick) {
    list.textContent = "";
    for (const it of items) {
      const li = el("li"); const b = el("button", "suggestion", it.label); b.type = "button";
      b.onclick = () => { list.hidden = true; pick(it); };
      li.append(b); list.append(li);
    }
    list.hidden = !items.length;
  }

  // A text box that suggests people by name; picked ones show as chips.
  function peoplePicker(box, opts = {}) {
    const input = box.querySelector("input"); const picked = box.querySelector(".picked");
    const sugg = box.querySelector(".suggestions"); const chosen = new Map();
    const draw = () => {
      picked.textContent = "";
      for (const [id, name] of chosen) {
        const li = el("li", "chip", name); const x = el("button", null, "×"); x.type = "button";
        x.onclick = () => { chosen.delete(id); draw(); }; li.append(x); picked.append(li);
      }
    };
    input.addEventListener("input", async () => {
      const q = input.value; if (isId(q.trim())) { sugg.hidden = true; return; }
      const users = await findPeople(q);
      if (input.value !== q) return;
      showSuggestions(sugg, users.map((u) => ({ label: u.full_name || u.name, user: u })), (it) => {
        input.value = "";
        if (opts.onPick) { opts.onPick(it.user); return; }
        if (opts.single) chosen.clear();
        chosen.set(it.user.id, it.label); draw();
      });
    });
    return { ids: () => [...chosen.keys()], clear: () => { chosen.clear(); draw(); } };
  }

  // @mentions: after "@", the members of the conversation whose name
  // matches (and "all" in a group or a contextual conversation).
  async function suggestMentions() {
    const ta = $("text"); const before = ta.value.slice(0, ta.selectionStart);
    const m = before.match(/@([^\s@]*)$/); const list = $("mention-suggestions");
    if (!m || !state.active) { list.hidden = true; return; }
    const q = m[1].toLowerCase(); const c = state.convs.get(state.active) || {};
    const members = new Set(c.members || []);
    let people = q ? await findPeople(q) : [...members].map((id) => ({ id, name: nameOf(id) }));
    people = people.filter((u) => members.has(u.id) && u.id !== state.me).slice(0, 8);
    const items = people.map((u) => ({ label: u.full_name || u.name, id: u.id }));
    if (c.kind !== "dialog" && ("all".startsWith(q) || t("msg.mentionAll").startsWith(q))) items.push({ label: "all", id: "all" });
    showSuggestions(list, items, (it) => {
      const start = before.length - m[0].length;
      ta.value = `${ta.value.slice(0, start)}@${it.label} ${ta.value.slice(ta.selectionStart)}`;
      state.mentions.set(it.id, it.label);
      ta.focus();
    });
  }

  // ---- search: results jump to the message in its timeline
  async function searchMessages() {
    const q = $("search-text").value.trim(); const list = $("search-results");
    if (!q) { list.hidden = true; list.textContent = ""; return; }
    const page = await request("search", { query: q, limit: 20 }).catch((e) => { setStatus(e.message); return null; });
    if (!page || $("search-text").value.trim() !== q) return;
    list.textContent = "";
    if (!page.hits.length) list.append(el("li", "none", t("search.none")));
    ensureNames(page.hits.map((h) => h.message.author_id));
    for (const h of page.hits) {
      const li = el("li"); const b = el("button", "hit"); b.type = "button";
      b.dataset.id = h.message.id;
      const conv = state.convs.get(h.message.conversation_id);
      b.append(el("small", "where", `${nameOf(h.message.author_id)} · ${conv ? t("search.in", { title: titleOf(conv) }) : ""} · ${dayName(h.message.created_at)}`));
      // The snippet with its matched words marked ([start, end) in characters).
      const chars = [...h.snippet]; const snip = el("span", "snippet"); let at = 0;
      for (const [a, z] of h.highlights) {
        snip.append(document.createTextNode(chars.slice(at, a).join("")), el("mark", null, chars.slice(a, z).join("")));
        at = z;
      }
      snip.append(document.createTextNode(chars.slice(at).join("")));
      b.append(snip);
      b.onclick = () => jumpTo(h.message.conversation_id, h.message.id, h.message.seq);
      li.append(b); list.append(li);
    }
    list.hidden = false;
  }

  // ---- wiring
  function wire() {
    $("composer").onsubmit = (e) => { e.preventDefault(); send(); };
    $("text").onkeydown = (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } };
    $("text").oninput = () => {
      const now = Date.now();
      if (state.active && now - state.lastTyping > 2000) { state.lastTyping = now; request("typing", { conversation_id: state.active }).catch(() => {}); }
    };
    $("messages").onscroll = () => { if ($("messages").scrollTop === 0) olderHistory(); };
    $("back").onclick = () => { document.querySelector("main").classList.remove("in-conversation"); document.body.classList.remove("in-conversation"); };
    $("call-audio").onclick = () => startCall("audio");
    $("call-video").onclick = () => startCall("video");
    $("call-accept").onclick = acceptCall;
    $("call-decline").onclick = declineCall;
    $("call-hangup").onclick = hangup;
    $("call-screen").onclick = () => shareScreen().catch((e) => setStatus(`screen: ${e.message}`));
    $("call-mute").onclick = () => {
      const c = state.call; if (!c || !c.local) return;
      const on = !$("call-mute").classList.toggle("on");
      for (const track of c.local.getAudioTracks()) track.enabled = on;
      $("call-mute").setAttribute("aria-pressed", String(!on)); $("call-mute").textContent = t(on ? "call.mute" : "call.unmute");
    };
    $("call-camera").onclick = () => {
      const c = state.call; if (!c || !c.local) return;
      const on = !$("call-camera").classList.toggle("on");
      for (const track of c.local.getVideoTracks()) track.enabled = on;
      $("call-camera").setAttribute("aria-pressed", String(!on)); $("call-camera").textContent = t(on ? "call.cameraOff" : "call.cameraOn");
    };
    $("push").onclick = enablePush;
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.addEventListener("message", (e) => {
        if (e.data && e.data.type === "open-conversation") open(e.data.conversation_id);
      });
    }
    $("lang").onchange = () => {
      state.lang = $("lang").value; localStorage.setItem("parley.lang", state.lang); applyI18n();
    };
    $("search").onsubmit = (e) => { e.preventDefault(); searchMessages(); };
    $("search-text").oninput = () => {
      clearTimeout(state.searchTimer); state.searchTimer = setTimeout(searchMessages, 300);
    };
    $("reply-cancel").onclick = cancelReply;
    $("forward-go").onclick = forward;
    $("forward-cancel").onclick = () => { state.forwarding = null; $("forward-dialog").close(); };
    $("conv-rename").onclick = async () => {
      const c = state.convs.get(state.active); if (!c) return;
      const title = prompt(t("conv.renamePrompt"), c.title);
      if (title && title.trim()) await request("conversation.update", { conversation_id: c.id, title }).catch((er) => setStatus(er.message));
    };
    $("conv-add").onclick = () => { $("add-member").hidden = !$("add-member").hidden; $("add-user").focus(); };
    const groupPicker = peoplePicker(document.querySelector('[data-for="group-members"]'));
    const dialogPicker = peoplePicker(document.querySelector('[data-for="dialog-user"]'), { single: true });
    peoplePicker($("add-member"), { single: true, onPick: async (u) => {
      await request("members.add", { conversation_id: state.active, user_ids: [u.id] }).catch((er) => setStatus(er.message));
      $("add-member").hidden = true;
    } });
    $("text").addEventListener("input", suggestMentions);
    $("new-group").onsubmit = async (e) => {
      e.preventDefault();
      const members = [...groupPicker.ids(), ...$("group-members").value.split(",").map((s) => s.trim()).filter(isId)];
      const c = await request("conversation.create", { title: $("group-title").value, members }).catch((er) => alert(er.message));
      if (c) { state.convs.set(c.id, c); state.lastSeq.set(c.id, c.last_seq); renderList(); open(c.id); }
    };
    $("new-dialog").onsubmit = async (e) => {
      e.preventDefault();
      const typed = $("dialog-user").value.trim();
      const user = dialogPicker.ids()[0] || (isId(typed) ? typed : null);
      if (!user) return;
      const c = await request("dialog.open", { user_id: user }).catch((er) => alert(er.message));
      if (c) { state.convs.set(c.id, c); state.lastSeq.set(c.id, c.last_seq); renderList(); open(c.id); }
    };
    $("dev-form").onsubmit = async (e) => {
      e.preventDefault();
      try { state.token = await devSignin($("dev-name").value); start(); }
      catch (er) { $("signin-error").textContent = er.message; }
    };
  }

  async function startEmbed() {
    const q = new URLSearchParams(location.search);
    state.embed = { infobase: q.get("infobase"), object: q.get("object") };
    $("side").hidden = true;
    const waitLive = () => new Promise((r) => { const t = setInterval(() => { if ($("status").textContent === "live") { clearInterval(t); r(); } }, 50); });
    await waitLive();
    const c = await request("context.get", { infobase_id: state.embed.infobase, object_ref: state.embed.object }).catch((e) => { $("conv-title").textContent = e.message; return null; });
    if (c) { state.convs.set(c.id, c); state.lastSeq.set(c.id, c.last_seq); open(c.id); }
  }

  function start() {
    $("signin").hidden = true; $("app").hidden = false;
    connect();
    if (location.pathname.startsWith("/embed/context")) startEmbed();
  }

  state.lang = pickLang();
  wire();
  applyI18n();
  state.token = takeToken();
  if (state.token) start(); else { $("signin").hidden = false; setStatus("signed out"); }
})();
