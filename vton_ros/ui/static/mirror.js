// The mirror page: live view, garment shelf, try-on progress and result.
// Live data comes over one WebSocket that reconnects by itself; every request stays on
// this page's origin. Binary messages: one kind byte, then a JPEG or PNG (see hub.py).
'use strict';

const KIND = {FRAME: 1, OVERLAY: 2, PREVIEW: 3, RESULT: 4, BEFORE: 5};
const BUSY = ['sending', 'running', 'canceling'];
// Cloth types (the server's names) as a shopper reads them.
const TYPE_NAMES = {upper: 'Top', lower: 'Bottom', overall: 'Full outfit'};
const $ = (id) => document.getElementById(id);

// Read by the browser tests and the benchmark (performance.now() milliseconds).
const stats = window.mirrorStats = {
  frames: 0, frameTimes: [], tap: null, firstPreview: null, result: null, messages: 0,
  ends: 0,  // try-ons that ended (result or error)
  state: null,  // the last state message
};

let ws = null;
let retry = 500;
let state = {state: 'offline'};
let browsing = false;  // "Try another" pressed: show the frozen photo and the shelf
let frozenUrl = null;  // the live frame shown frozen while a try-on runs
let note = '';  // what the page itself has to say (an upload), until the state changes
let reveal = null;  // id of the garment just uploaded: scrolled into view
const urls = {};  // element id -> its current blob URL

function show(id, visible) {
  $(id).hidden = !visible;
}

function setImage(id, blob) {
  const url = URL.createObjectURL(blob);
  const old = urls[id];
  urls[id] = url;
  $(id).src = url;
  if (old && old !== frozenUrl) {
    URL.revokeObjectURL(old);
  }
}

function onBinary(data) {
  const kind = new Uint8Array(data, 0, 1)[0];
  const type = kind === KIND.OVERLAY ? 'image/png' : 'image/jpeg';
  const blob = new Blob([new Uint8Array(data, 1)], {type});
  const now = performance.now();
  if (kind === KIND.FRAME) {
    setImage('camera', blob);
    stats.frames += 1;
    stats.frameTimes.push(now);
    if (stats.frameTimes.length > 600) {
      stats.frameTimes.shift();
    }
  } else if (kind === KIND.OVERLAY) {
    setImage('overlay', blob);
  } else if (kind === KIND.PREVIEW) {
    setImage('preview', blob);
    if (stats.tap !== null && stats.firstPreview === null) {
      stats.firstPreview = now;
    }
  } else if (kind === KIND.RESULT) {
    setImage('result', blob);
    if (stats.tap !== null && stats.result === null) {
      stats.result = now;
    }
  } else if (kind === KIND.BEFORE) {
    setImage('before', blob);
  }
  render();
}

function onState(message) {
  if (message.type === 'catalog') {
    loadGarments();
    return;
  }
  if (message.type !== 'state') {
    return;
  }
  if (message.state !== state.state) {
    note = '';
    if (!BUSY.includes(message.state)) {
      releaseFrozen();
    }
  }
  if (message.state === 'result') {
    browsing = false;
  }
  if (['result', 'error'].includes(message.state) && BUSY.includes(state.state)) {
    stats.ends += 1;
    $('compare').value = '0';  // a new result is shown whole
  }
  state = message;
  stats.state = message;
  render();
}

function releaseFrozen() {
  if (frozenUrl && frozenUrl !== urls.camera) {
    URL.revokeObjectURL(frozenUrl);
  }
  frozenUrl = null;
}

function render() {
  const name = state.state;
  const busy = BUSY.includes(name);
  const result = name === 'result' && !browsing;
  const frozen = state.frozen && !result;
  $('app').dataset.state = name;
  $('status').textContent = note || (browsing && name === 'result' ?
    'Pick another garment to try on the same photo.' : (state.status || ''));
  show('camera', !result && !frozen && !(busy && frozenUrl));
  show('frozen', busy && !state.frozen && frozenUrl !== null);
  show('before', result || frozen);
  show('result', result && Boolean(urls.result));
  show('compare-label', result);
  const live = !result && !frozen && !busy;
  show('overlay', overlayOn && live);
  show('overlay-toggle', live);  // the mask is drawn over the live view only
  show('preview', busy && Boolean(urls.preview));
  show('progress', busy || result);
  show('cancel', busy);
  $('cancel').disabled = name === 'canceling';
  show('again', result);
  show('live', (result || frozen) && !busy);
  $('banner').hidden = ws !== null && ws.readyState === WebSocket.OPEN && name !== 'offline';
  if (name === 'offline' && ws && ws.readyState === WebSocket.OPEN) {
    $('banner').textContent = 'The mirror is starting. Please wait a moment.';
  }
  const total = state.total || 0;
  const step = Math.min(state.step || 0, total);
  const bar = $('progress');
  bar.setAttribute('aria-valuenow', String(step));
  bar.setAttribute('aria-valuemax', String(total));
  $('progress-fill').style.width = total ? `${(100 * step) / total}%` : '0%';
  let eta = '';
  if (busy && total) {
    eta = state.eta > 0 ? `about ${Math.ceil(state.eta)} s left` : `step ${step} of ${total}`;
  } else if (result && state.server_total) {
    eta = `done in ${state.server_total.toFixed(1)} s`;
  }
  $('eta').textContent = eta;
  for (const button of document.querySelectorAll('[data-testid="garment"]')) {
    button.setAttribute('aria-busy', String(busy));
  }
  compare();
}

function compare() {
  const split = Number($('compare').value);
  // The before image lies over the result: it shows left of the slider's thumb only.
  $('before').style.clipPath = state.state === 'result' && !browsing ?
    `inset(0 ${100 - split}% 0 0)` : 'none';
}

function send(message) {
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify(message));
  }
}

function tryOn(id) {
  if (BUSY.includes(state.state)) {
    send({type: 'try', garment: id});  // the mirror answers that it is busy
    return;
  }
  if (!state.frozen && urls.camera) {
    frozenUrl = urls.camera;
    $('frozen').src = frozenUrl;
  }
  browsing = false;
  note = '';
  stats.tap = performance.now();
  stats.firstPreview = null;
  stats.result = null;
  delete urls.preview;
  send({type: 'try', garment: id});
}

function garmentButton(item) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'garment';
  button.dataset.testid = 'garment';
  button.dataset.garmentId = item.id;
  const img = document.createElement('img');
  img.src = item.thumb;
  img.alt = '';
  const name = document.createElement('span');
  name.className = 'name';
  name.textContent = item.name;
  const type = document.createElement('span');
  type.className = 'type';
  type.textContent = TYPE_NAMES[item.cloth_type] || item.cloth_type;
  button.append(img, name, type);
  button.addEventListener('click', () => tryOn(item.id));
  li.append(button);
  return li;
}

async function loadGarments() {
  try {
    const response = await fetch('api/garments', {cache: 'no-store'});
    const body = await response.json();
    $('garments').replaceChildren(...body.garments.map(garmentButton));
    const item = reveal && document.querySelector(`[data-garment-id="${reveal}"]`);
    if (item) {
      item.scrollIntoView({block: 'nearest', inline: 'nearest'});
    }
    render();
  } catch (err) {
    // The WebSocket's reconnect loads the list again.
  }
}

function say(text) {
  note = text;
  render();
}

async function upload(file) {
  const type = $('upload-type').value;
  say('Uploading your garment…');
  try {
    const response = await fetch(`api/upload?cloth_type=${encodeURIComponent(type)}`, {
      method: 'POST', body: file,
      headers: {'Content-Type': file.type || 'application/octet-stream'},
    });
    const body = await response.json();
    if (response.ok) {
      reveal = body.id;
      await loadGarments();
      say('Your garment is on the shelf: tap it to try it on.');
    } else {
      say(`That photo cannot be used: ${body.error}`);
    }
  } catch (err) {
    say('The upload failed. Please try again.');
  }
  $('upload').value = '';
}

let overlayOn = false;

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  ws = new WebSocket(`${scheme}://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    retry = 500;
    send({type: 'overlay', on: overlayOn});
    loadGarments();
    render();
  };
  ws.onmessage = (event) => {
    stats.messages += 1;
    if (typeof event.data === 'string') {
      onState(JSON.parse(event.data));
    } else {
      onBinary(event.data);
    }
  };
  ws.onclose = () => {
    ws = null;
    $('banner').textContent = 'Reconnecting to the mirror…';
    render();
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 4000);
  };
}

function init() {
  $('cancel').addEventListener('click', () => send({type: 'cancel'}));
  $('again').addEventListener('click', () => {
    browsing = true;
    render();
  });
  $('live').addEventListener('click', () => {
    browsing = false;
    send({type: 'live'});
  });
  $('overlay-toggle').addEventListener('click', () => {
    overlayOn = !overlayOn;
    $('overlay-toggle').setAttribute('aria-pressed', String(overlayOn));
    $('overlay-toggle').textContent = overlayOn ? 'Hide mask' : 'Show mask';
    send({type: 'overlay', on: overlayOn});
    render();
  });
  $('compare').addEventListener('input', compare);
  $('upload').addEventListener('change', (event) => {
    if (event.target.files.length) {
      upload(event.target.files[0]);
    }
  });
  $('upload-form').addEventListener('submit', (event) => event.preventDefault());
  connect();
}

init();
