// The inpainting page of `python -m inpainting.serve`.
//
// The image is shown on a canvas at its full resolution (scaled down by CSS), with two canvases
// of the same size on top: the hole and, for guided models, the sketch lines. Strokes are painted
// in image pixels, so the mask sent to /api/inpaint has exactly the image's size whatever the
// zoom. The image file is sent as it was chosen, so the result keeps its pixels outside the hole.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HOLE_COLOUR = "#ff2d55";
  const SKETCH_COLOUR = "#00c8ff";
  const UNDO_BYTES = 512 * 2 ** 20; // memory the undo snapshots may take
  const TOOL_SIZES = { hole: 32, erase: 32, sketch: 3 }; // screen pixels
  const PROGRESS_EVERY = 500; // ms between two questions to /api/progress

  const imageLayer = $("image-layer");
  const maskLayer = $("mask-layer");
  const sketchLayer = $("sketch-layer");
  const layers = $("layers");
  const stage = $("stage");
  const maskContext = maskLayer.getContext("2d", { willReadFrequently: true });
  const sketchContext = sketchLayer.getContext("2d", { willReadFrequently: true });

  const state = {
    health: null, // the answer of /api/health
    file: null, // the image File, sent unchanged
    shown: null, // the Blob shown for it: the file without EXIF orientation
    width: 0,
    height: 0,
    tool: "hole",
    sizes: { ...TOOL_SIZES },
    undo: [], // {mask, sketch} ImageData before each change
    redo: [], // {mask, sketch} ImageData of each change undone, the last undone last
    stroke: null, // {last: [x, y]} while the pointer paints
    request: null, // AbortController of the running fill
    urls: [], // object URLs of the shown result, revoked when replaced
  };

  // ---------------------------------------------------------------- messages

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function hideError() {
    $("error").hidden = true;
  }

  function formatBytes(bytes) {
    return `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 0)} MB`;
  }

  async function loadHealth() {
    try {
      const response = await fetch("api/health");
      const health = await response.json();
      if (!response.ok) throw new Error(health.error || response.statusText);
      state.health = health;
      const kind = health.kind === "checkpoint" ? "checkpoint" : "SavedModel";
      const guided = health.guided ? ", guided by sketches" : "";
      $("model-info").textContent =
        `Model: DeepFill ${health.version || "(version not recorded)"} ${kind}${guided}` +
        ` \u00b7 images up to ${health.max_pixels.toLocaleString("en")} pixels` +
        ` \u00b7 uploads up to ${formatBytes(health.max_upload_bytes)}`;
      $("sketch-tool").hidden = !health.guided;
      if (health.hr) $("hr").value = health.hr;
    } catch (err) {
      $("model-info").textContent = "Not connected.";
      showError(`Cannot reach the inpainting server (${err.message}); ` +
                "is python -m inpainting.serve still running?");
    }
  }

  // ---------------------------------------------------------------- opening an image

  // The parts of a JPEG or PNG file without its EXIF metadata, or null if it has none. Browsers
  // turn photos upright by their EXIF orientation; the server uses the pixels in the order they
  // are stored (as the command-line tools do), so the page must show them in that order too.
  function withoutExif(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = (start, length) => String.fromCharCode(...bytes.subarray(start, start + length));
    const parts = [];
    let found = false;
    let i;
    if (bytes[0] === 0xff && bytes[1] === 0xd8) { // JPEG: segments up to the start of scan
      i = 2;
      while (i + 4 <= bytes.length && bytes[i] === 0xff && bytes[i + 1] !== 0xda) {
        if (bytes[i + 1] === 0xff) { // fill byte
          parts.push(bytes.subarray(i, i + 1));
          i += 1;
          continue;
        }
        const end = i + 2 + view.getUint16(i + 2);
        if (bytes[i + 1] === 0xe1 && text(i + 4, 4) === "Exif") found = true;
        else parts.push(bytes.subarray(i, end));
        i = end;
      }
      parts.unshift(bytes.subarray(0, 2));
    } else if (text(1, 3) === "PNG") { // PNG: length, type, data, CRC per chunk
      i = 8;
      while (i + 12 <= bytes.length && text(i + 4, 4) !== "IEND") {
        const end = i + 12 + view.getUint32(i);
        if (text(i + 4, 4) === "eXIf") found = true;
        else parts.push(bytes.subarray(i, end));
        i = end;
      }
      parts.unshift(bytes.subarray(0, 8));
    }
    if (!found) return null;
    parts.push(bytes.subarray(i));
    return parts;
  }

  // {image: decoded <img>, blob: what to show, exif: whether an EXIF block was left out}
  async function decode(file) {
    const parts = withoutExif(new Uint8Array(await file.arrayBuffer()));
    const blob = parts ? new Blob(parts, { type: file.type }) : file;
    const url = URL.createObjectURL(blob);
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      return { image, blob, exif: parts !== null };
    } finally {
      URL.revokeObjectURL(url);
    }
  }

  async function openFile(file) {
    if (!file || state.request) return;
    hideError();
    if (state.health && file.size > state.health.max_upload_bytes) {
      showError(`${file.name} is ${formatBytes(file.size)}, more than the server accepts ` +
                `(${formatBytes(state.health.max_upload_bytes)}, --max_upload_mb); ` +
                "open a smaller or better compressed image.");
      return;
    }
    let decoded;
    try {
      decoded = await decode(file);
    } catch {
      showError(`${file.name}: the browser cannot display this file; open a PNG, JPEG, WebP, ` +
                "GIF or BMP image.");
      return;
    }
    const image = decoded.image;
    state.file = file;
    state.shown = decoded.blob;
    state.width = image.naturalWidth;
    state.height = image.naturalHeight;
    for (const canvas of [imageLayer, maskLayer, sketchLayer]) {
      canvas.width = state.width;
      canvas.height = state.height;
    }
    imageLayer.getContext("2d").drawImage(image, 0, 0);
    state.undo = [];
    state.redo = [];
    layers.hidden = false;
    $("drop-hint").hidden = true;
    stage.classList.remove("empty");
    $("result").hidden = true;
    fitToPanel();
    const exif = decoded.exif ? " (EXIF orientation ignored: the pixels as stored, as the server reads them)"
      : "";
    $("image-info").textContent = `${file.name}: ${state.width} \u00d7 ${state.height} pixels${exif}`;
    updateButtons();
  }

  // Shows the image as large as the panel allows (75% of the window's height at most).
  function fitToPanel() {
    if (!state.file) return;
    const scale = Math.min(stage.clientWidth / state.width, 0.75 * window.innerHeight / state.height);
    for (const box of [layers, $("compare")]) {
      box.style.width = `${Math.floor(state.width * scale)}px`;
      box.style.height = `${Math.floor(state.height * scale)}px`;
    }
  }

  window.addEventListener("resize", fitToPanel);
  $("file").addEventListener("change", (event) => {
    openFile(event.target.files[0]);
    event.target.value = ""; // choosing the same file again opens it again
  });

  // Dropping a file anywhere must not make the browser navigate away to it.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => event.preventDefault());
  }
  stage.addEventListener("dragover", () => stage.classList.add("dragging"));
  stage.addEventListener("dragleave", () => stage.classList.remove("dragging"));
  stage.addEventListener("drop", (event) => {
    stage.classList.remove("dragging");
    openFile(event.dataTransfer.files[0]);
  });

  // ---------------------------------------------------------------- painting

  function imagePixelsPerScreenPixel() {
    return state.width / layers.getBoundingClientRect().width;
  }

  function toImage(event) {
    const box = layers.getBoundingClientRect();
    return [(event.clientX - box.left) * state.width / box.width,
            (event.clientY - box.top) * state.height / box.height];
  }

  function paint(from, to) {
    const erase = state.tool === "erase";
    const contexts = state.tool === "sketch" ? [sketchContext]
      : erase ? [maskContext, sketchContext] : [maskContext];
    const width = state.sizes[state.tool] * imagePixelsPerScreenPixel();
    for (const context of contexts) {
      context.save();
      context.globalCompositeOperation = erase ? "destination-out" : "source-over";
      context.strokeStyle = context.fillStyle = state.tool === "sketch" ? SKETCH_COLOUR : HOLE_COLOUR;
      context.lineWidth = width;
      context.lineCap = "round";
      context.lineJoin = "round";
      context.beginPath();
      if (from[0] === to[0] && from[1] === to[1]) {
        context.arc(from[0], from[1], width / 2, 0, 2 * Math.PI);
        context.fill();
      } else {
        context.moveTo(...from);
        context.lineTo(...to);
        context.stroke();
      }
      context.restore();
    }
  }

  function snapshot() {
    const size = [0, 0, state.width, state.height];
    return { mask: maskContext.getImageData(...size), sketch: sketchContext.getImageData(...size) };
  }

  function pushUndo() {
    const limit = Math.max(2, Math.floor(UNDO_BYTES / (state.width * state.height * 8)));
    state.undo.push(snapshot());
    state.redo = [];
    while (state.undo.length > limit) state.undo.shift();
  }

  // Moves one snapshot from `from` to the layers, the layers' present state onto `to`.
  function restore(from, to) {
    if (from.length === 0 || state.request) return;
    to.push(snapshot());
    const previous = from.pop();
    maskContext.putImageData(previous.mask, 0, 0);
    sketchContext.putImageData(previous.sketch, 0, 0);
    updateButtons();
  }

  const undo = () => restore(state.undo, state.redo);
  const redo = () => restore(state.redo, state.undo);

  function clear() {
    if (!state.file || state.request) return;
    pushUndo();
    maskContext.clearRect(0, 0, state.width, state.height);
    sketchContext.clearRect(0, 0, state.width, state.height);
    updateButtons();
  }

  function moveCursor(event) {
    const box = layers.getBoundingClientRect();
    const cursor = $("cursor");
    const size = state.sizes[state.tool];
    cursor.hidden = false;
    cursor.style.width = cursor.style.height = `${size}px`;
    cursor.style.left = `${event.clientX - box.left}px`;
    cursor.style.top = `${event.clientY - box.top}px`;
  }

  layers.addEventListener("pointerdown", (event) => {
    if (event.button !== 0 || !state.file || state.request) return;
    event.preventDefault();
    layers.setPointerCapture(event.pointerId);
    pushUndo();
    const point = toImage(event);
    state.stroke = { last: point };
    paint(point, point);
  });
  layers.addEventListener("pointermove", (event) => {
    moveCursor(event);
    if (!state.stroke) return;
    const point = toImage(event);
    paint(state.stroke.last, point);
    state.stroke.last = point;
  });
  for (const type of ["pointerup", "pointercancel"]) {
    layers.addEventListener(type, () => {
      state.stroke = null;
      updateButtons();
    });
  }
  layers.addEventListener("pointerleave", () => { $("cursor").hidden = true; });

  function setSize(value) {
    const size = Math.min(200, Math.max(1, Math.round(value)));
    state.sizes[state.tool] = size;
    $("brush-size").value = size;
    $("brush-size-value").value = size;
  }

  for (const input of document.querySelectorAll('input[name="tool"]')) {
    input.addEventListener("change", () => {
      state.tool = input.value;
      setSize(state.sizes[state.tool]);
    });
  }
  $("brush-size").addEventListener("input", (event) => setSize(Number(event.target.value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  for (const id of ["mask-grow", "mask-feather"]) {
    $(id).addEventListener("input", (event) => { $(`${id}-value`).value = event.target.value; });
  }
  $("clear").addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && (key === "y" || (key === "z" && event.shiftKey))) {
      event.preventDefault();
      redo();
    } else if ((event.ctrlKey || event.metaKey) && key === "z") {
      event.preventDefault();
      undo();
    } else if (event.key === "[" || event.key === "]") {
      setSize(state.sizes[state.tool] * (event.key === "]" ? 1.25 : 0.8));
    }
  });

  // ---------------------------------------------------------------- filling

  function hasPaint(context) {
    const alpha = context.getImageData(0, 0, state.width, state.height).data;
    for (let i = 3; i < alpha.length; i += 4) {
      if (alpha[i] > 127) return true;
    }
    return false;
  }

  // A layer as the server reads masks: white where painted, black elsewhere, full resolution.
  function layerPng(canvas) {
    const out = document.createElement("canvas");
    out.width = state.width;
    out.height = state.height;
    const context = out.getContext("2d");
    context.drawImage(canvas, 0, 0);
    context.globalCompositeOperation = "source-in";
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, out.width, out.height);
    context.globalCompositeOperation = "destination-over";
    context.fillStyle = "#000000";
    context.fillRect(0, 0, out.width, out.height);
    return new Promise((resolve, reject) => out.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("the browser could not encode the mask"))),
      "image/png"));
  }

  function base64Blob(text, type) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return new Blob([bytes], { type });
  }

  // A random id the server knows the running fill by, for /api/progress.
  function newJobId() {
    return Array.from(crypto.getRandomValues(new Uint8Array(12)),
                      (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // What the server is doing, from its /api/progress answer.
  function describeProgress(progress) {
    switch (progress.stage) {
      case "receiving": return "uploading";
      case "queued": return "waiting for the requests before it";
      case "decoding": return "decoding the image";
      case "encoding": return "encoding the result";
      case "filling": {
        const pieces = progress.total ? ` (${progress.done} of ${progress.total} done)` : "";
        if (progress.mode === "crop") return `filling crops around the holes${pieces}`;
        if (progress.mode === "resize") return "filling the image at its working size";
        return "filling";
      }
      default: return "";
    }
  }

  async function errorOf(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error) message = body.error;
    } catch {
      // Not JSON (e.g. a proxy's page): keep the status line.
    }
    const who = response.status < 500 ? "The server refused the request" : "The server failed";
    return `${who} (${response.status}): ${message}`;
  }

  async function fill() {
    if (!state.file || state.request) return;
    hideError();
    if (!hasPaint(maskContext)) {
      showError("Paint the hole first: the model fills the painted area.");
      return;
    }
    state.request = new AbortController();
    const job = newJobId();
    const stop = startProgress(job);
    try {
      const form = new FormData();
      form.append("image", state.file, state.file.name);
      form.append("mask", await layerPng(maskLayer), "mask.png");
      if (state.health && state.health.guided && hasPaint(sketchContext)) {
        form.append("sketch", await layerPng(sketchLayer), "sketch.png");
      }
      const query = new URLSearchParams({ include: "flow", hr: $("hr").value, job,
                                          mask_grow: $("mask-grow").value,
                                          mask_feather: $("mask-feather").value });
      const response = await fetch(`api/inpaint?${query}`,
                                   { method: "POST", body: form, signal: state.request.signal });
      if (!response.ok) throw new Error(await errorOf(response));
      showResult(await response.json());
    } catch (err) {
      if (err.name === "AbortError") {
        showError("Cancelled; the server finishes the running fill anyway.");
      } else if (err instanceof TypeError) {
        showError(`Cannot reach the inpainting server (${err.message}); is it still running?`);
      } else {
        showError(err.message);
      }
    } finally {
      stop();
      state.request = null;
      updateButtons();
    }
  }

  // Shows the seconds since the fill started and, asked every PROGRESS_EVERY ms, the server's stage.
  function startProgress(job) {
    const start = performance.now();
    const elapsed = $("elapsed");
    let stage = "";
    let asking = false;
    let running = true;
    const tick = () => {
      const seconds = ((performance.now() - start) / 1000).toFixed(1);
      elapsed.textContent = `Filling\u2026 ${seconds} s${stage ? ` \u00b7 ${stage}` : ""}`;
    };
    const ask = async () => {
      if (asking) return;
      asking = true;
      try {
        const response = await fetch(`api/progress?job=${job}`);
        if (response.ok && running) stage = describeProgress(await response.json());
      } catch {
        // The fill's own request reports a server that went away.
      } finally {
        asking = false;
      }
    };
    tick();
    $("progress").hidden = false;
    updateButtons();
    const timer = setInterval(tick, 100);
    const poll = setInterval(ask, PROGRESS_EVERY);
    return () => {
      running = false;
      clearInterval(timer);
      clearInterval(poll);
      $("progress").hidden = true;
    };
  }

  function showResult(body) {
    for (const url of state.urls) URL.revokeObjectURL(url);
    const result = URL.createObjectURL(base64Blob(body.image, "image/png"));
    const flow = URL.createObjectURL(base64Blob(body.flow, "image/png"));
    const before = URL.createObjectURL(state.shown);
    state.urls = [result, flow, before];
    $("before").src = before;
    $("after").src = result;
    $("flow").src = flow;
    const download = $("download");
    download.href = result;
    download.download = `${state.file.name.replace(/\.[^.]*$/, "") || "image"}-inpainted.png`;
    $("timing").textContent =
      `${body.width} \u00d7 ${body.height} filled in ${body.seconds.toFixed(2)} s (model time)`;
    $("result").hidden = false;
    fitToPanel();
    setSplit(Number($("split").value));
  }

  function setSplit(percent) {
    const clip = `inset(0 0 0 ${percent}%)`;
    $("after").style.clipPath = clip;
    $("flow").style.clipPath = clip;
    $("divider").style.left = `${percent}%`;
  }

  function updateButtons() {
    const busy = state.request !== null;
    $("fill").disabled = !state.file || busy;
    $("clear").disabled = !state.file || busy;
    $("undo").disabled = state.undo.length === 0 || busy;
    $("redo").disabled = state.redo.length === 0 || busy;
    $("mask-grow").disabled = busy;
    $("mask-feather").disabled = busy;
    $("file").disabled = busy;
    $("hr").disabled = busy;
  }

  $("fill").addEventListener("click", fill);
  $("cancel").addEventListener("click", () => state.request && state.request.abort());
  $("split").addEventListener("input", (event) => setSplit(Number(event.target.value)));
  $("show-flow").addEventListener("change", (event) => { $("flow").hidden = !event.target.checked; });
  $("error-close").addEventListener("click", hideError);

  loadHealth();
})();
