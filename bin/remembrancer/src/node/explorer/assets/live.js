// Live values for the explorer's pages. Elements with data-live="overview.field" show that
// field of each update; elements with data-namespace and data-field show that namespace's
// field. One event stream per browser: a SharedWorker (live-worker.js) holds it for every tab
// of this explorer; where there is none, the page opens its own. Without JavaScript the pages
// still show the values they were drawn with.
(() => {
  'use strict';
  const status = document.getElementById('live');
  const age = (ms) => (ms < 1000 ? `${ms} ms` : ms < 120000 ? `${Math.floor(ms / 1000)} s` : `${Math.floor(ms / 60000)} min`);
  const show = (text) => {
    if (status && status.textContent !== text) status.textContent = text;
  };
  const apply = (state) => {
    for (const element of document.querySelectorAll('[data-live]')) {
      const value = element.dataset.live.split('.').reduce((v, key) => (v == null ? v : v[key]), state);
      if (value === undefined || value === null) continue;
      const text = element.dataset.format === 'age' ? age(value) : String(value);
      if (element.textContent !== text) element.textContent = text;
    }
    for (const element of document.querySelectorAll('[data-namespace][data-field]')) {
      const namespace = state.namespaces && state.namespaces[element.dataset.namespace];
      const value = namespace ? namespace[element.dataset.field] : undefined;
      if (value === undefined || value === null) continue;
      if (element.textContent !== String(value)) element.textContent = String(value);
    }
  };
  const take = (message) => {
    if (message.kind === 'update' || message.kind === 'resync') {
      apply(JSON.parse(message.data));
      show('live');
    } else if (message.kind === 'error') {
      show('reconnecting');
    } else if (message.kind === 'open') {
      show('live');
    }
  };
  if (typeof SharedWorker === 'function') {
    const worker = new SharedWorker('/assets/live-worker.js');
    worker.port.onmessage = (event) => take(event.data);
    worker.port.start();
    addEventListener('pagehide', () => worker.port.postMessage('bye'));
  } else if (typeof EventSource === 'function') {
    const source = new EventSource('/api/v1/events');
    for (const kind of ['update', 'resync']) source.addEventListener(kind, (event) => take({ kind, data: event.data }));
    source.onopen = () => take({ kind: 'open' });
    source.onerror = () => take({ kind: 'error' });
  }
})();
