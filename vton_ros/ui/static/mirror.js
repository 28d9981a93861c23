// The mirror page: live view, garment shelf, try-on progress and result.
// Live data comes over one WebSocket that reconnects by itself; every request stays on
// this page's origin. Binary messages: one kind byte, then a JPEG or PNG (see hub.py).
// Each WebSocket is a session of its own: the server names it (a secret page id, sent
// with this page's upload and list requests), and its results and uploads are this page's.
'use strict';

const KIND = {FRAME: 1, OVERLAY: 2, PREVIEW: 3, RESULT: 4, BEFORE: 5, LIVE: 6};
// Live follow: why the garment cannot follow the shopper now (tryon/live/status).
const LIVE_LOST = {
  'no person': 'Step back in front of the mirror to see the garment on you.',
  'turned away': 'Turn towards the mirror to see the garment on you.',
  'moved too far': 'You moved too far for the live view: tap the garment to try it on again.',
};
const RERENDER_FOR = ['turned away', 'moved too far'];
const BUSY = ['sending', 'running', 'canceling'];
// Cloth types (the server's names) as a shopper reads them.
const TYPE_NAMES = {upper: 'Top', lower: 'Bottom', overall: 'Full outfit'};
// What the page says over the picture when the server does not run real CatVTON weights.
const MODEL_LABELS = {
  demo: 'Demo model: not a real try-on',
  random: 'Random weights: test pictures only',
};
const $ = (id) => document.getElementById(id);

// The access token came in the address (?token=...); the server answered this page with
// its cookie, so the token leaves the address bar and the history now.
if (new URLSearchParams(location.search).has('token')) {
  history.replaceState(null, '', location.pathname);
}

// Read by the browser tests and the benchmark (performance.now() milliseconds).
const stats = window.mirrorStats = {
  frames: 0, frameTimes: [], tap: null, firstPreview: null, result: null, messages: 0,
  ends: 0,  // try-ons that ended (result or error)
  resets: 0,  // idle resets (nobody in front of the mirror)
  state: null,  // the last state message
  model: null,  // the last model message
  live: 0, liveTimes: [],  // live composites shown (tryon/live)
};

let ws = null;
let retry = 500;
let page = '';  // this page's id (the server's name for this session)
let state = {state: 'offline'};
let browsing = false;  // "Try another" pressed: show the frozen photo and the shelf
let note = '';  // what the page itself has to say (an upload), until the state changes
let reveal = null;  // id of the garment just uploaded: scrolled into view
let liveFocus = 0.5;  // where the person stands in the live view (0..1 of its width)
let overlayOn = false;
let tapped = false;  // a tap was sent; the mirror has not answered it yet
let liveOn = false;  // show the garment following the shopper instead of the still result
let liveChosen = false;  // the shopper pressed the Live toggle: the default no longer applies
let liveInfo = {status: 'no result', rerender: false};  // the mirror's last live message
let lastGarment = '';  // the garment of the last try-on (Live renders it again if asked to)
const urls = {};  // element id -> its current blob URL

function show(id, visible) {
  $(id).hidden = !visible;
}

function setImage(id, blob) {
  const url = URL.createObjectURL(blob);
  const old = urls[id];
  urls[id] = url;
  $(id).src = url;
  if (old) {
    URL.revokeObjectURL(old);
  }
}

function dropImage(id) {
  if (urls[id]) {
    URL.revokeObjectURL(urls[id]);
    delete urls[id];
  }
  $(id).removeAttribute('src');
}

// Fill the view with a picture: one wider than the view is cropped at its sides around
// the person (never letterboxed); a narrower one is shown whole.
function place(img, focus) {
  const view = $('view');
  const width = img.naturalWidth;
  const height = img.naturalHeight;
  if (!width || !height || !view.clientWidth || !view.clientHeight) {
    return;
  }
  const shown = (width * view.clientHeight) / height;  // its width when it fills the height
  if (shown <= view.clientWidth) {
    img.style.objectFit = 'contain';
    img.style.objectPosition = '50% 50%';
    return;
  }
  // Put the person's centre in the middle of the view, within the picture's edges.
  const left = Math.min(0, Math.max(view.clientWidth - shown,
                                    view.clientWidth / 2 - focus * shown));
  img.style.objectFit = 'cover';
  img.style.objectPosition = `${left}px 50%`;
}

function placeAll() {
  // The view is never wider than the camera's picture at its height: no bars beside it.
  const camera = $('camera');
  if (camera.naturalWidth) {
    const aspect = camera.naturalWidth / camera.naturalHeight;
    $('view').style.maxWidth = `${Math.ceil($('view').clientHeight * aspect)}px`;
  }
  for (const id of ['camera', 'overlay', 'livecomp']) {
    place($(id), liveFocus);
  }
  const focus = typeof state.focus === 'number' ? state.focus : 0.5;
  for (const id of ['before', 'result']) {
    place($(id), focus);
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
  } else if (kind === KIND.LIVE) {
    setImage('livecomp', blob);
    stats.live += 1;
    stats.liveTimes.push(now);
    if (stats.liveTimes.length > 600) {
      stats.liveTimes.shift();
    }
  }
  render();
}

function onMessage(message) {
  if (message.type === 'page') {
    if (page && message.id !== page) {  // the mirror did not know this page: a new session
      browsing = false;
      for (const id of ['preview', 'result', 'before']) {
        dropImage(id);
      }
    }
    page = message.id;
    loadGarments();
  } else if (message.type === 'model') {
    stats.model = message;
    render();
  } else if (message.type === 'focus') {
    liveFocus = message.x;
    placeAll();
  } else if (message.type === 'state') {
    onState(message);
  } else if (message.type === 'live') {
    onLive(message);
  }
}

function onLive(message) {
  if (!liveChosen) {
    liveOn = Boolean(message.on);
  }
  const lost = message.status !== liveInfo.status && RERENDER_FOR.includes(message.status);
  liveInfo = message;
  if (lost && message.rerender && liveOn && state.state === 'result' && lastGarment) {
    send({type: 'live'});  // let the frozen frame of the last result go: without this the
    tryOn(lastGarment);  // mirror rendered that old frame again; now the current one
  }
  render();
}

function onState(message) {
  if (message.state !== state.state) {
    note = '';
  }
  if (message.state === 'result') {
    browsing = false;
  }
  if (message.state === 'sending') {
    dropImage('preview');
    dropImage('result');
    dropImage('livecomp');  // the last try-on's composite is not this one's
  }
  // A try-on ended, or a tap was refused at once (no camera frame, nobody in view).
  if (['result', 'error'].includes(message.state) && !message.busy &&
      (BUSY.includes(state.state) || tapped)) {
    stats.ends += 1;
    $('compare').value = '0';  // a new result is shown whole
  }
  tapped = false;
  if (message.reset) {
    forget();
  }
  state = message;
  stats.state = message;
  render();
}

// Nobody in front of the mirror: the next shopper sees none of the last one's pictures.
function forget() {
  stats.resets += 1;
  browsing = false;
  note = '';
  reveal = null;
  for (const id of ['preview', 'result', 'before']) {
    dropImage(id);
  }
  loadGarments();  // the uploads are gone
}

function render() {
  const name = state.state;
  const busy = BUSY.includes(name);
  const result = name === 'result' && !browsing;
  const frozen = state.frozen && !result;
  // Live on: the garment follows the shopper, or the plain camera view says why not.
  const following = liveOn && result && liveInfo.status === 'live' && Boolean(urls.livecomp);
  const lost = liveOn && result && LIVE_LOST[liveInfo.status] ? LIVE_LOST[liveInfo.status] : '';
  const still = result && !following && !lost;
  $('app').dataset.state = name;
  $('app').dataset.live = following ? 'following' : (lost ? 'lost' : 'off');
  $('status').textContent = note || lost || (browsing && name === 'result' ?
    'Pick another garment to try on the same photo.' : (state.status || ''));
  const photo = (busy || frozen || still) && Boolean(urls.before);  // the frame dressed
  show('camera', !photo && !following);
  show('livecomp', following);
  show('before', photo);
  show('result', still && Boolean(urls.result));
  show('compare-label', still);
  const live = !photo;
  show('overlay', overlayOn && live && !busy);
  show('overlay-toggle', live && !busy);  // the mask is drawn over the live view only
  show('preview', busy && Boolean(urls.preview));
  show('progress', busy || result);
  show('cancel', busy);
  $('cancel').disabled = name === 'canceling';
  show('again', result);
  $('live-toggle').setAttribute('aria-pressed', String(liveOn));
  $('live-toggle').textContent = liveOn ? 'Live: on' : 'Live: off';
  show('live', (result || frozen) && !busy);
  const label = stats.model && MODEL_LABELS[stats.model.kind];
  $('model-label').textContent = label || '';
  show('model-label', Boolean(label));
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
  placeAll();
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
  if (!BUSY.includes(state.state)) {
    browsing = false;
    note = '';
    stats.tap = performance.now();
    stats.firstPreview = null;
    stats.result = null;
    lastGarment = id;
    tapped = true;
  }
  send({type: 'try', garment: id});  // while busy, the mirror answers "Please wait"
}

function withPage(url) {
  return `${url}${url.includes('?') ? '&' : '?'}page=${encodeURIComponent(page)}`;
}

function garmentButton(item) {
  const li = document.createElement('li');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'garment';
  button.dataset.testid = 'garment';
  button.dataset.garmentId = item.id;
  const img = document.createElement('img');
  img.src = item.upload ? withPage(item.thumb) : item.thumb;
  img.alt = '';
  img.draggable = false;
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
  if (!page) {
    return;
  }
  try {
    const response = await fetch(withPage('api/garments'), {cache: 'no-store'});
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
    const response = await fetch(withPage(`api/upload?cloth_type=${encodeURIComponent(type)}`), {
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

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  // A page that reconnects names its session: the mirror gives it back (its try-on goes on).
  const resume = page ? `?page=${encodeURIComponent(page)}` : '';
  ws = new WebSocket(`${scheme}://${location.host}/ws${resume}`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => {
    retry = 500;
    send({type: 'overlay', on: overlayOn});
    render();
  };
  ws.onmessage = (event) => {
    stats.messages += 1;
    if (typeof event.data === 'string') {
      onMessage(JSON.parse(event.data));
    } else {
      onBinary(event.data);
    }
  };
  ws.onclose = () => {
    ws = null;
    state = {state: 'offline'};
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
  $('live-toggle').addEventListener('click', () => {
    liveOn = !liveOn;
    liveChosen = true;
    render();
  });
  $('compare').addEventListener('input', compare);
  $('upload').addEventListener('change', (event) => {
    if (event.target.files.length) {
      upload(event.target.files[0]);
    }
  });
  $('upload-form').addEventListener('submit', (event) => event.preventDefault());
  for (const id of ['camera', 'overlay', 'before', 'result', 'livecomp']) {
    $(id).addEventListener('load', placeAll);
  }
  window.addEventListener('resize', placeAll);
  connect();
}

init();
