// One event stream for every tab of this explorer in this browser: each page's port gets each
// event, and the newest at once when it connects. A page says 'bye' when it goes away.
'use strict';
const ports = new Set();
let last = null;
let source = null;

function send(message) {
  for (const port of ports) port.postMessage(message);
}

function connect() {
  source = new EventSource('/api/v1/events');
  for (const kind of ['update', 'resync']) {
    source.addEventListener(kind, (event) => {
      last = { kind, data: event.data };
      send(last);
    });
  }
  source.onopen = () => send({ kind: 'open' });
  source.onerror = () => send({ kind: 'error' });
}

onconnect = (event) => {
  const port = event.ports[0];
  ports.add(port);
  port.onmessage = (message) => {
    if (message.data === 'bye') ports.delete(port);
  };
  port.start();
  if (last) port.postMessage(last);
  if (!source) connect();
};
