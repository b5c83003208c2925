// The inpainting page of `python -m inpainting.serve`.
//
// The image is shown on a canvas at its full resolution (scaled by CSS to the zoom), with canvases
// on top: the hole, the preview of the grown hole and feathered band, and, for guided models, the
// sketch lines. Strokes are painted in image pixels, so the mask sent to /api/inpaint has exactly
// the image's size whatever the zoom. The image file is sent as it was chosen, so the result keeps
// its pixels outside the hole.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const HOLE_COLOUR = "#ff2d55";
  const SKETCH_COLOUR = "#00c8ff";
  const GROW_RGB = [255, 149, 0]; // the preview of the grown hole
  const FEATHER_RGB = [255, 214, 10]; // the preview of the feathered band, fading out
  const UNDO_BYTES = 512 * 2 ** 20; // memory the undo snapshots may take
  const TOOL_SIZES = { hole: 32, erase: 32, sketch: 3, pan: 32 }; // screen pixels
  const PROGRESS_EVERY = 500; // ms between two questions to /api/progress
  const ZOOMS = [0.25, 0.5, 1, 2, 4, 8, 16]; // the steps of the zoom keys (screen pixels per image pixel)
  const MAX_ZOOM = 16;
  const PREVIEW_PIXELS = 2 ** 21; // the grow/feather preview is computed on at most this many pixels

  const imageLayer = $("image-layer");
  const maskLayer = $("mask-layer");
  const sketchLayer = $("sketch-layer");
  const previewLayer = $("preview-layer");
  const layers = $("layers");
  const stage = $("stage");
  const maskContext = maskLayer.getContext("2d", { willReadFrequently: true });
  const sketchContext = sketchLayer.getContext("2d", { willReadFrequently: true });
  const previewContext = previewLayer.getContext("2d");

  const state = {
    health: null, // the answer of /api/health
    file: null, // the image File, sent unchanged
    shown: null, // the Blob shown for it: the file without EXIF orientation
    info: "", // what the page says about the image
    width: 0,
    height: 0,
    tool: "hole",
    sizes: { ...TOOL_SIZES },
    undo: [], // {mask, sketch} ImageData before each change
    redo: [], // {mask, sketch} ImageData of each change undone, the last undone last
    stroke: null, // {last: [x, y]} while the pointer paints
    pan: null, // {x, y, left, top}: the pointer's and the view's scroll position where a drag began
    touches: new Map(), // pointerId -> [clientX, clientY] of each finger on the view
    pinch: null, // {distance, scale, point} where two fingers came down, until all are lifted
    space: false, // whether Space is held (dragging pans)
    zoom: "fit", // "fit" or screen pixels per image pixel
    scale: 1, // screen pixels per image pixel as shown
    pointer: null, // [clientX, clientY] of the pointer's last move over the view
    preview: 0, // the animation frame that redraws the grow/feather preview, 0 if none is due
    maskUrl: null, // object URL of the last saved mask
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

  // {blob: the file without its EXIF block, exif: whether there was one}
  async function storedPixels(file) {
    const parts = withoutExif(new Uint8Array(await file.arrayBuffer()));
    return { blob: parts ? new Blob(parts, { type: file.type }) : file, exif: parts !== null };
  }

  // {image: decoded <img>, blob: what to show, exif: whether an EXIF block was left out}
  async function decode(file) {
    const { blob, exif } = await storedPixels(file);
    const url = URL.createObjectURL(blob);
    try {
      const image = new Image();
      image.src = url;
      await image.decode();
      return { image, blob, exif };
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
    const reduce = Math.min(1, Math.sqrt(PREVIEW_PIXELS / (state.width * state.height)));
    previewLayer.width = Math.max(1, Math.round(state.width * reduce));
    previewLayer.height = Math.max(1, Math.round(state.height * reduce));
    imageLayer.getContext("2d").drawImage(image, 0, 0);
    state.undo = [];
    state.redo = [];
    state.zoom = "fit";
    layers.hidden = false;
    $("drop-hint").hidden = true;
    stage.classList.remove("empty");
    $("result").hidden = true;
    layout();
    stage.scrollTo(0, 0);
    updatePreview();
    const exif = decoded.exif ? " (EXIF orientation ignored: the pixels as stored, as the server reads them)"
      : "";
    state.info = `${file.name}: ${state.width} \u00d7 ${state.height} pixels${exif}`;
    $("image-info").textContent = state.info;
    updateButtons();
  }

  // ---------------------------------------------------------------- zoom and pan

  // Screen pixels per image pixel that show the whole image as large as the panel allows (75% of
  // the window's height at most).
  function fitScale() {
    const width = stage.offsetWidth - 2 * stage.clientLeft; // inside the borders, scrollbars or not
    return Math.min(width / state.width, 0.75 * window.innerHeight / state.height);
  }

  function setBoxSize(box, scale, round) {
    const size = (pixels) => `${round ? Math.floor(pixels * scale) : pixels * scale}px`;
    box.style.width = size(state.width);
    box.style.height = size(state.height);
  }

  // The view is as high as the fitted image; the image in it is shown at the zoom, the result fitted.
  function layout() {
    if (!state.file) return;
    const fit = fitScale();
    setBoxSize($("compare"), fit, true);
    stage.style.height = `${Math.floor(state.height * fit)}px`;
    showAt(state.zoom === "fit" ? fit : state.zoom);
  }

  function showAt(scale) {
    state.scale = scale;
    setBoxSize(layers, scale, state.zoom === "fit");
    layers.classList.toggle("pixels", scale >= 2);
    const menu = $("zoom");
    menu.options[0].textContent = `Fit (${Math.round(fitScale() * 100)} %)`;
    if (state.zoom === "fit" || [...menu.options].some((option) => option.value === String(state.zoom))) {
      menu.value = String(state.zoom);
    } else {
      $("zoom-other").textContent = `${Math.round(state.zoom * 100)} %`;
      menu.value = "other";
    }
  }

  // Zooms to `zoom` ("fit" or screen pixels per image pixel) and puts the image point `point` (by
  // default the one under `anchor`) at `anchor` ([clientX, clientY]; the middle of the view by
  // default).
  function setZoom(zoom, anchor, point) {
    if (!state.file) return;
    const fit = fitScale();
    const view = stage.getBoundingClientRect();
    const [x, y] = anchor || [view.left + stage.clientLeft + stage.clientWidth / 2,
                              view.top + stage.clientTop + stage.clientHeight / 2];
    const [imageX, imageY] = point || toImage({ clientX: x, clientY: y });
    state.zoom = zoom === "fit" ? "fit" : Math.min(MAX_ZOOM, Math.max(Math.min(fit, ZOOMS[0]), zoom));
    showAt(state.zoom === "fit" ? fit : state.zoom);
    const box = layers.getBoundingClientRect();
    stage.scrollLeft += box.left + imageX * box.width / state.width - x;
    stage.scrollTop += box.top + imageY * box.height / state.height - y;
    if (state.pointer) moveCursor(...state.pointer);
  }

  // The next step of ZOOMS or the fitting zoom, larger (`direction` 1) or smaller (-1).
  function zoomStep(direction) {
    const fit = fitScale();
    const steps = [...ZOOMS, fit].sort((a, b) => direction * (a - b));
    const next = steps.find((zoom) => direction * (zoom - state.scale) > 1e-6 * state.scale);
    if (next !== undefined) setZoom(next === fit ? "fit" : next);
  }

  window.addEventListener("resize", layout);
  $("zoom").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value !== "other") setZoom(value === "fit" ? "fit" : Number(value));
    stage.focus({ preventScroll: true }); // the keys work on the image again
  });
  stage.addEventListener("wheel", (event) => {
    if (!state.file) return;
    event.preventDefault();
    // A touchpad pinch arrives as a wheel event with ctrlKey set and small steps.
    const pixels = event.deltaY * (event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1);
    setZoom(state.scale * Math.exp(-pixels * (event.ctrlKey ? 0.01 : 0.002)),
            [event.clientX, event.clientY]);
  }, { passive: false });

  function panning() {
    return state.tool === "pan" || state.space || state.pan !== null;
  }

  function updatePanCursor() {
    layers.classList.toggle("pan", panning());
    layers.classList.toggle("panning", state.pan !== null);
    if (panning()) $("cursor").hidden = true;
  }
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
    changed();
  }

  // After each change of the layers: the buttons, and the preview once the browser draws next.
  function changed() {
    updateButtons();
    if (!state.preview) state.preview = requestAnimationFrame(updatePreview);
  }

  const undo = () => restore(state.undo, state.redo);
  const redo = () => restore(state.redo, state.undo);

  function clear() {
    if (!state.file || state.request) return;
    pushUndo();
    maskContext.clearRect(0, 0, state.width, state.height);
    sketchContext.clearRect(0, 0, state.width, state.height);
    changed();
  }

  // The brush outline follows the pointer over the image ([clientX, clientY]); hidden elsewhere.
  function moveCursor(x, y) {
    const box = layers.getBoundingClientRect();
    const cursor = $("cursor");
    const size = state.sizes[state.tool];
    cursor.hidden = panning() || x < box.left || x > box.right || y < box.top || y > box.bottom;
    cursor.style.width = cursor.style.height = `${size}px`;
    cursor.style.left = `${x - box.left}px`;
    cursor.style.top = `${y - box.top}px`;
  }

  // The middle of the first two fingers on the view and their distance apart.
  function fingers() {
    const [a, b] = state.touches.values();
    return [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2, Math.hypot(a[0] - b[0], a[1] - b[1])];
  }

  // Two fingers zoom and move the view together: the image point between them stays between them.
  // A stroke the first finger began is taken back.
  function startPinch() {
    if (state.stroke) {
      const before = state.undo.pop();
      maskContext.putImageData(before.mask, 0, 0);
      sketchContext.putImageData(before.sketch, 0, 0);
      state.stroke = null;
      changed();
    }
    state.pan = null;
    const [x, y, distance] = fingers();
    state.pinch = { distance, scale: state.scale, point: toImage({ clientX: x, clientY: y }) };
  }

  // Dragging with the middle button, with Space held or with the Pan tool moves the view; dragging
  // with the left button (or one finger) over the image paints.
  stage.addEventListener("pointerdown", (event) => {
    if (!state.file) return;
    if (event.pointerType === "touch") {
      state.touches.set(event.pointerId, [event.clientX, event.clientY]);
      if (state.touches.size >= 2 || state.pinch) {
        event.preventDefault();
        stage.setPointerCapture(event.pointerId);
        if (state.touches.size === 2) startPinch();
        return;
      }
    }
    if (event.button === 1 || (event.button === 0 && panning())) {
      event.preventDefault();
      stage.setPointerCapture(event.pointerId);
      state.pan = { x: event.clientX, y: event.clientY, left: stage.scrollLeft, top: stage.scrollTop };
      updatePanCursor();
      return;
    }
    if (event.button !== 0 || state.request || !layers.contains(event.target)) return;
    event.preventDefault();
    stage.setPointerCapture(event.pointerId);
    pushUndo();
    const point = toImage(event);
    state.stroke = { last: point };
    paint(point, point);
  });
  stage.addEventListener("mousedown", (event) => {
    if (event.button === 1) event.preventDefault(); // no autoscroll: the middle button pans
  });
  stage.addEventListener("pointermove", (event) => {
    if (state.touches.has(event.pointerId)) state.touches.set(event.pointerId, [event.clientX, event.clientY]);
    if (state.pinch) {
      if (state.touches.size >= 2) {
        const [x, y, distance] = fingers();
        setZoom(state.pinch.scale * distance / Math.max(1, state.pinch.distance), [x, y], state.pinch.point);
      }
      return;
    }
    state.pointer = [event.clientX, event.clientY];
    if (state.pan) {
      stage.scrollLeft = state.pan.left - (event.clientX - state.pan.x);
      stage.scrollTop = state.pan.top - (event.clientY - state.pan.y);
      return;
    }
    moveCursor(event.clientX, event.clientY);
    if (!state.stroke) return;
    const point = toImage(event);
    paint(state.stroke.last, point);
    state.stroke.last = point;
  });
  for (const type of ["pointerup", "pointercancel"]) {
    stage.addEventListener(type, (event) => {
      state.touches.delete(event.pointerId);
      if (state.touches.size === 0) state.pinch = null;
      if (state.stroke) {
        state.stroke = null;
        changed();
      }
      state.pan = null;
      updatePanCursor();
    });
  }
  stage.addEventListener("pointerleave", () => {
    state.pointer = null;
    $("cursor").hidden = true;
  });

  function setSize(value) {
    const size = Math.min(200, Math.max(1, Math.round(value)));
    state.sizes[state.tool] = size;
    $("brush-size").value = size;
    $("brush-size-value").value = size;
  }

  function setTool(tool) {
    const input = document.querySelector(`input[name="tool"][value="${tool}"]`);
    if (!input || input.closest("[hidden]")) return;
    input.checked = true;
    state.tool = tool;
    setSize(state.sizes[tool]);
    updatePanCursor();
  }

  function showHole(shown) {
    $("show-hole").checked = shown;
    layers.classList.toggle("hole-hidden", !shown);
  }

  for (const input of document.querySelectorAll('input[name="tool"]')) {
    input.addEventListener("change", () => setTool(input.value));
  }
  $("brush-size").addEventListener("input", (event) => setSize(Number(event.target.value)));
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  for (const id of ["mask-grow", "mask-feather"]) {
    $(id).addEventListener("input", (event) => {
      $(`${id}-value`).value = event.target.value;
      changed();
    });
  }
  $("clear").addEventListener("click", clear);
  $("show-hole").addEventListener("change", (event) => showHole(event.target.checked));

  // Keys typed into a menu or a text field are theirs.
  function typing(target) {
    return target.tagName === "SELECT" || target.tagName === "TEXTAREA" ||
      (target.tagName === "INPUT" && !["range", "radio", "checkbox", "file"].includes(target.type));
  }

  const KEYS = {
    "[": () => setSize(state.sizes[state.tool] * 0.8),
    "]": () => setSize(state.sizes[state.tool] * 1.25),
    "+": () => zoomStep(1),
    "=": () => zoomStep(1),
    "-": () => zoomStep(-1),
    "_": () => zoomStep(-1),
    0: () => setZoom("fit"),
    1: () => setZoom(1),
    b: () => setTool("hole"),
    e: () => setTool("erase"),
    s: () => setTool("sketch"),
    h: () => setTool("pan"),
    m: () => showHole(!$("show-hole").checked),
  };

  document.addEventListener("keydown", (event) => {
    const key = event.key.toLowerCase();
    if (event.ctrlKey || event.metaKey) {
      if (key === "y" || (key === "z" && event.shiftKey)) redo();
      else if (key === "z") undo();
      else if (key === "enter") fill();
      else return;
      event.preventDefault();
      return;
    }
    if (event.altKey || typing(event.target)) return;
    if (key === " ") {
      // Space pans while held, unless it presses a focused button or box.
      if (event.target !== document.body && !stage.contains(event.target)) return;
      event.preventDefault();
      state.space = true;
      updatePanCursor();
    } else if (KEYS[key]) {
      event.preventDefault();
      KEYS[key]();
    }
  });
  document.addEventListener("keyup", (event) => {
    if (event.key === " " && state.space) {
      state.space = false;
      updatePanCursor();
    }
  });
  window.addEventListener("blur", () => {
    state.space = false;
    updatePanCursor();
  });

  // ---------------------------------------------------------------- grow and feather preview

  // The squared Euclidean distance of every pixel to the nearest one where `inside` is 1
  // (Float64Array; 1e20 and more where there is none): the exact transform computed as two passes
  // of the lower envelope of parabolas, down the columns then along the rows.
  function squaredDistances(inside, width, height) {
    const far = 1e20;
    const out = new Float64Array(width * height);
    for (let i = 0; i < out.length; i += 1) out[i] = inside[i] ? 0 : far;
    const longest = Math.max(width, height);
    const line = new Float64Array(longest);
    const result = new Float64Array(longest);
    const apex = new Int32Array(longest); // where each parabola of the envelope has its minimum
    const from = new Float64Array(longest + 1); // where each one starts being the lowest
    const envelope = (n) => {
      const meet = (q, p) => ((line[q] + q * q) - (line[p] + p * p)) / (2 * (q - p));
      let k = 0;
      apex[0] = 0;
      from[0] = -Infinity;
      from[1] = Infinity;
      for (let q = 1; q < n; q += 1) {
        let x = meet(q, apex[k]);
        while (x <= from[k]) {
          k -= 1;
          x = meet(q, apex[k]);
        }
        k += 1;
        apex[k] = q;
        from[k] = x;
        from[k + 1] = Infinity;
      }
      k = 0;
      for (let q = 0; q < n; q += 1) {
        while (from[k + 1] < q) k += 1;
        result[q] = (q - apex[k]) ** 2 + line[apex[k]];
      }
    };
    for (let x = 0; x < width; x += 1) {
      for (let y = 0; y < height; y += 1) line[y] = out[y * width + x];
      envelope(height);
      for (let y = 0; y < height; y += 1) out[y * width + x] = result[y];
    }
    for (let y = 0; y < height; y += 1) {
      const row = y * width;
      for (let x = 0; x < width; x += 1) line[x] = out[row + x];
      envelope(width);
      for (let x = 0; x < width; x += 1) out[row + x] = result[x];
    }
    return out;
  }

  // Uint8Array of the preview's size: 1 where the painted hole is (more than half opaque, as the
  // server reads the mask), the mask scaled down on large images.
  function paintedHole(width, height) {
    let context = maskContext;
    if (width !== state.width || height !== state.height) {
      const small = document.createElement("canvas");
      small.width = width;
      small.height = height;
      context = small.getContext("2d", { willReadFrequently: true });
      context.drawImage(maskLayer, 0, 0, width, height);
    }
    const rgba = context.getImageData(0, 0, width, height).data;
    const hole = new Uint8Array(width * height);
    for (let i = 0; i < hole.length; i += 1) hole[i] = rgba[4 * i + 3] > 127 ? 1 : 0;
    return hole;
  }

  // Draws what Grow and Feather will do to the painted hole, as the server computes it
  // (inference.masktools): the pixels within `grow` of the hole, and the band within `feather` of
  // that grown hole with the fill's weight as opacity. Exact at the image's resolution; large
  // images are previewed at PREVIEW_PIXELS.
  function updatePreview() {
    state.preview = 0;
    const { width, height } = previewLayer;
    const grow = Number($("mask-grow").value);
    const feather = Number($("mask-feather").value);
    previewContext.clearRect(0, 0, width, height);
    if (state.file && (grow > 0 || feather > 0)) {
      const reduce = width / state.width; // preview pixels per image pixel
      const painted = paintedHole(width, height);
      let hole = painted;
      if (grow > 0) {
        const distance = squaredDistances(painted, width, height);
        const reach = (grow * reduce) ** 2;
        hole = distance.map((squared) => (squared <= reach ? 1 : 0));
      }
      const band = feather > 0 ? squaredDistances(hole, width, height) : null;
      const image = previewContext.createImageData(width, height);
      const pixels = image.data;
      for (let i = 0; i < hole.length; i += 1) {
        if (painted[i]) continue; // shown by the hole layer
        if (hole[i]) {
          pixels.set(GROW_RGB, 4 * i);
          pixels[4 * i + 3] = 255;
        } else if (band) {
          const distance = Math.sqrt(band[i]) / reduce; // in image pixels
          if (distance > feather) continue;
          const t = 1 - distance / (feather + 1);
          pixels.set(FEATHER_RGB, 4 * i);
          pixels[4 * i + 3] = Math.max(1, Math.round(255 * t * t * (3 - 2 * t)));
        }
      }
      previewContext.putImageData(image, 0, 0);
    }
    previewLayer.dataset.shows = `${grow} ${feather}`; // what is drawn (for tests)
  }

  // ---------------------------------------------------------------- mask files

  const HOLE_RGB = [1, 3, 5].map((i) => parseInt(HOLE_COLOUR.slice(i, i + 2), 16));

  // Replaces the painted hole with a mask file of the image's size, read as the server reads
  // masks (imageio.read_mask): with any transparent pixel, opaque (alpha above 127) is hole;
  // otherwise white (luma 128 and above) is hole. Pixels as stored: EXIF orientation is ignored.
  async function openMask(file) {
    if (!file || !state.file || state.request) return;
    hideError();
    let bitmap;
    try {
      const { blob } = await storedPixels(file);
      bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    } catch {
      showError(`${file.name}: the browser cannot read this file as an image; open a PNG, JPEG, WebP, ` +
                "GIF or BMP mask.");
      return;
    }
    const { width, height } = bitmap;
    if (width !== state.width || height !== state.height) {
      bitmap.close();
      showError(`${file.name} is ${width} \u00d7 ${height} pixels but the image is ` +
                `${state.width} \u00d7 ${state.height}: a mask must have the image's size.`);
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.drawImage(bitmap, 0, 0);
    bitmap.close();
    const source = context.getImageData(0, 0, width, height).data;
    let alpha = false;
    for (let i = 3; i < source.length && !alpha; i += 4) alpha = source[i] < 255;
    const mask = maskContext.createImageData(width, height);
    const out = mask.data;
    for (let i = 0; i < source.length; i += 4) {
      const hole = alpha ? source[i + 3] > 127
        : 0.299 * source[i] + 0.587 * source[i + 1] + 0.114 * source[i + 2] >= 127.5;
      if (hole) {
        out.set(HOLE_RGB, i);
        out[i + 3] = 255;
      }
    }
    pushUndo();
    maskContext.putImageData(mask, 0, 0);
    changed();
    $("image-info").textContent =
      `${state.info} \u00b7 hole from ${file.name} (${alpha ? "opaque" : "white"} = hole)`;
  }

  // The image's file name without its extension, for the names of saved files.
  function stem() {
    return state.file.name.replace(/\.[^.]*$/, "") || "image";
  }

  // Saves the hole as it is sent with a fill: a PNG of the image's size, white = hole.
  async function saveMask() {
    if (!state.file) return;
    try {
      const url = URL.createObjectURL(await layerPng(maskLayer));
      if (state.maskUrl) URL.revokeObjectURL(state.maskUrl);
      state.maskUrl = url;
      const link = document.createElement("a");
      link.href = url;
      link.download = `${stem()}-mask.png`;
      link.click();
    } catch (err) {
      showError(err.message);
    }
  }

  $("mask-file").addEventListener("change", (event) => {
    openMask(event.target.files[0]);
    event.target.value = ""; // choosing the same file again opens it again
  });
  $("save-mask").addEventListener("click", saveMask);

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
    download.download = `${stem()}-inpainted.png`;
    $("timing").textContent =
      `${body.width} \u00d7 ${body.height} filled in ${body.seconds.toFixed(2)} s (model time)`;
    $("result").hidden = false;
    layout();
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
    $("mask-file").disabled = !state.file || busy;
    $("mask-open").setAttribute("aria-disabled", String(!state.file || busy));
    $("save-mask").disabled = !state.file;
    $("zoom").disabled = !state.file;
    $("hr").disabled = busy;
  }

  $("fill").addEventListener("click", fill);
  $("cancel").addEventListener("click", () => state.request && state.request.abort());
  $("split").addEventListener("input", (event) => setSplit(Number(event.target.value)));
  $("show-flow").addEventListener("change", (event) => { $("flow").hidden = !event.target.checked; });
  $("error-close").addEventListener("click", hideError);

  loadHealth();
})();
