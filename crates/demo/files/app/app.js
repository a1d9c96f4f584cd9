// The demo app's script: proves scripts run, and exercises server-sent events and a
// WebSocket echo through whatever carries the page (the browser test checks each).
"use strict";

document.getElementById("script").textContent = "script ran";

const sse = document.getElementById("sse");
const events = new EventSource("/app/events?count=3&interval_ms=200");
let received = 0;
events.onmessage = (event) => {
  received += 1;
  sse.textContent = `events: ${received} received (last: ${event.data})`;
  if (received === 3) {
    events.close();
  }
};
events.onerror = () => {
  if (received < 3) {
    sse.textContent = `events: stream failed after ${received}`;
  }
  events.close();
};

const ws = document.getElementById("ws");
const scheme = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(`${scheme}//${location.host}/app/ws`);
socket.onopen = () => socket.send("hello over ssh");
socket.onmessage = (message) => {
  ws.textContent = `echo: ${message.data}`;
  socket.close();
};
socket.onerror = () => {
  ws.textContent = "WebSocket failed";
};
