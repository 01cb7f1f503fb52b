// Parley's service worker: shows the Web Push notices the server sends to a
// user who has no open session, and opens the conversation when clicked.
// The payload is what docs/integrations.md "Web Push" lists.
"use strict";

const WORDS = {
  en: { missed: "Missed call", message: "New message", mention: "You were mentioned" },
  ru: { missed: "Пропущенный звонок", message: "Новое сообщение", mention: "Вас упомянули" },
};

function words() {
  const lang = (self.navigator.language || "en").slice(0, 2);
  return WORDS[lang] || WORDS.en;
}

self.addEventListener("push", (e) => {
  let p = {};
  try { p = e.data ? e.data.json() : {}; } catch (_) { p = {}; }
  const w = words();
  const title = p.type === "call.missed" ? w.missed
    : (p.title || (p.mentioned ? w.mention : w.message));
  const body = p.type === "call.missed" ? (p.title || "") : (p.text || "");
  e.waitUntil(self.registration.showNotification(title, {
    body,
    tag: p.conversation_id || "parley",
    renotify: true,
    data: { conversation_id: p.conversation_id || null },
  }));
});

self.addEventListener("notificationclick", (e) => {
  e.notification.close();
  const c = e.notification.data && e.notification.data.conversation_id;
  e.waitUntil((async () => {
    const all = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const w of all) {
      if (new URL(w.url).origin === self.location.origin) {
        await w.focus();
        if (c) w.postMessage({ type: "open-conversation", conversation_id: c });
        return;
      }
    }
    await self.clients.openWindow("/");
  })());
});
