"""The review page: one self-contained HTML file (inline CSS, script and thumbnails; no network).

A grid of thumbnails, each with its file name, given label, suggested label and score, and why it
is shown. Keyboard first: ``1``-``9``, ``0`` relabel to the first ten classes, ``l`` picks any class
by name, ``s`` takes the suggestion, ``x`` excludes, ``k`` keeps, ``u`` undoes the last decision,
arrows move, ``r`` / ``c`` cycle the reason and class filters, ``h`` hides decided images, ``?``
shows the keys. Served by :mod:`kerasclf.review.server`, every decision is posted to it and
appended to ``decisions.csv`` at once; opened as a file, the page keeps decisions in memory and
``d`` downloads them as a ``decisions.csv``.

Every file and class name reaches the page as JSON inside a ``<script type="application/json">``
block (``<``, ``>`` and ``&`` escaped, so no name can close the block) and is put into the page
with ``textContent`` only; a Content-Security-Policy forbids any load from the network.

Example:
    >>> html_text = page_html(found, thumbs, decisions=[], title="Review of photos")   # doctest: +SKIP
"""
from __future__ import annotations

import html
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from kerasclf._progress import progress
from kerasclf.analysis.report import image_uri
from kerasclf.data.decisions import Decision
from kerasclf.data.reader import read_image
from kerasclf.errors import DataError
from kerasclf.review.items import REASONS, Found

__all__ = ["THUMBNAIL_SIZE", "thumbnail", "thumbnails", "page_html", "script_json"]

#: the longer side of a thumbnail, in pixels
THUMBNAIL_SIZE = 160


def thumbnail(path: str, size: int = THUMBNAIL_SIZE) -> str:
    """A JPEG ``data:`` URI of the image at ``path`` (read by :func:`kerasclf.data.reader.read_image`,
    the one reader), its longer side ``size`` pixels; ``""`` when it cannot be read.

    Example:
        >>> thumbnail("photos/cat/1.jpg")[:23]     # doctest: +SKIP
        'data:image/jpeg;base64,'
    """
    try:
        img = Image.fromarray(read_image(path))
    except DataError:
        return ""
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return image_uri(buf.getvalue())


def thumbnails(paths: Sequence[str], size: int = THUMBNAIL_SIZE) -> dict[str, str]:
    """``{path: data URI}`` of every path (a progress bar on a terminal)."""
    return {p: thumbnail(p, size) for p in progress(paths, total=len(paths), desc="thumbnails", unit="image")}


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script type="application/json">``: ``<``, ``>``, ``&``
    and the two JavaScript line separators are escaped, so no string can end the block.

    Example:
        >>> script_json({"name": "</script><b>"})
        '{"name": "\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def page_html(found: Found, thumbs: dict[str, str], *, decisions: Sequence[Decision], title: str,
              folder: str = "") -> str:
    """The page for ``found``'s items, showing ``decisions`` (the rows of ``decisions.csv``, in order).

    Args:
        found: the items and class names (:func:`kerasclf.review.items.collect_items`).
        thumbs: ``{path: data URI}`` (:func:`thumbnails`).
        decisions: the decisions so far: the page shows them and counts what is left.
        title: the page's title.
        folder: the review folder, named on the page.
    """
    data = {
        "title": title, "folder": folder, "classes": found.class_names,
        "reasons": [r for r in REASONS if any(r in it.reasons for it in found.items)],
        "items": [{**it.to_dict(), "name": os.path.basename(it.path), "thumb": thumbs.get(it.path, "")}
                  for it in found.items],
        "decisions": [{"path": d.path, "action": d.action, "new_label": d.new_label, "reason": d.reason,
                       "time": d.time} for d in decisions],
    }
    return (_TEMPLATE.replace("%TITLE%", html.escape(title, quote=True))
            .replace("%CSS%", _CSS).replace("%SCRIPT%", _SCRIPT).replace("%DATA%", script_json(data)))


def write_page(path: str | Path, text: str) -> Path:
    """Write the page text to ``path`` (UTF-8) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title><style>%CSS%</style></head>
<body>
<header>
  <h1 id="title"></h1>
  <div id="bar">
    <span id="counter"></span>
    <label>reason <select id="reason"></select></label>
    <label>class <select id="klass"></select></label>
    <label><input type="checkbox" id="hide"> hide decided</label>
    <button id="download" type="button">download decisions.csv</button>
    <button id="finish" type="button">finish</button>
    <span id="status" role="status"></span>
  </div>
  <div id="keys"></div>
  <div id="picker" hidden><input id="pick" list="classlist" placeholder="class name, then Enter">
    <datalist id="classlist"></datalist></div>
</header>
<main id="grid"></main>
<script id="review-data" type="application/json">%DATA%</script>
<script>%SCRIPT%</script>
</body></html>
"""

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde1e8; --accent:#2f6fb0; --soft:#f5f7fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; color:var(--fg); }
header { position:sticky; top:0; background:#fff; border-bottom:1px solid var(--line); padding:10px 18px; z-index:2; }
h1 { font-size:19px; margin:0 0 6px; }
#bar { display:flex; flex-wrap:wrap; gap:14px; align-items:center; }
#counter { font-weight:600; }
#status { color:#b3261e; }
#keys { color:var(--muted); font-size:12.5px; margin-top:4px; }
#picker input { width:320px; margin-top:6px; }
main { display:grid; grid-template-columns:repeat(auto-fill, minmax(190px, 1fr)); gap:12px; padding:14px 18px 60px; }
.tile { border:2px solid var(--line); border-radius:6px; padding:6px; background:#fff; overflow:hidden; }
.tile.cursor { border-color:var(--accent); box-shadow:0 0 0 3px rgba(47,111,176,.25); }
.tile img { display:block; width:100%; height:150px; object-fit:contain; background:var(--soft); }
.tile .missing { height:150px; display:flex; align-items:center; justify-content:center; background:var(--soft); color:var(--muted); }
.tile .name { font-size:12px; color:var(--muted); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.tile .labels { margin:2px 0; }
.chip { display:inline-block; font-size:11px; padding:0 6px; border-radius:8px; background:#eef1f6; margin:1px 2px 1px 0; }
.state { font-weight:600; font-size:12.5px; min-height:1.3em; }
.tile[data-state="relabel"] { border-color:#2f8f4e; } .tile[data-state="relabel"] .state { color:#2f8f4e; }
.tile[data-state="exclude"] { border-color:#b3261e; opacity:.75; } .tile[data-state="exclude"] .state { color:#b3261e; }
.tile[data-state="keep"] { border-color:#8a94a6; } .tile[data-state="keep"] .state { color:#5b6475; }
.tile .notes { font-size:11px; color:var(--muted); max-height:3.9em; overflow:hidden; }
"""

_SCRIPT = r"""
(function () {
"use strict";
const D = JSON.parse(document.getElementById("review-data").textContent);
const served = location.protocol === "http:" || location.protocol === "https:";
const items = D.items, classes = D.classes;
const stacks = new Map(), order = [];
let cursor = 0, visible = [], pending = 0, closing = false;
const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; };

function push(d) {
  if (d.action === "undo") {
    const s = stacks.get(d.path) || []; s.pop();
    const k = order.lastIndexOf(d.path); if (k >= 0) order.splice(k, 1);
  } else {
    if (!stacks.has(d.path)) stacks.set(d.path, []);
    stacks.get(d.path).push(d); order.push(d.path);
  }
}
function current(path) { const s = stacks.get(path); return s && s.length ? s[s.length - 1] : null; }
D.decisions.forEach(push);

function stateText(d) {
  if (!d) return "";
  if (d.action === "relabel") return "relabelled \u2192 " + d.new_label;
  return d.action === "exclude" ? "excluded" : "kept";
}

const tiles = items.map((it, i) => {
  const t = el("div", "tile"); t.dataset.index = String(i);
  if (it.thumb) { const img = el("img"); img.src = it.thumb; img.alt = it.name; t.appendChild(img); }
  else t.appendChild(el("div", "missing", "unreadable image"));
  t.appendChild(el("div", "name", it.name)).title = it.path;
  const lab = el("div", "labels");
  lab.appendChild(el("span", "given", it.given));
  if (it.suggested && it.suggested !== it.given) {
    lab.appendChild(document.createTextNode(" \u2192 "));
    lab.appendChild(el("b", "suggested", it.suggested));
  }
  if (it.score !== null && it.score !== undefined) lab.appendChild(el("span", "score", " (" + Number(it.score).toFixed(2) + ")"));
  t.appendChild(lab);
  const why = el("div", "why"); it.reasons.forEach((r) => why.appendChild(el("span", "chip", r))); t.appendChild(why);
  t.appendChild(el("div", "state"));
  t.appendChild(el("div", "notes", it.notes.join(" \u00b7 ")));
  t.addEventListener("click", () => { const k = visible.indexOf(i); if (k >= 0) { cursor = k; show(); } });
  return t;
});

function paint(i) {
  const d = current(items[i].path), t = tiles[i];
  if (d) t.dataset.state = d.action; else delete t.dataset.state;
  t.querySelector(".state").textContent = stateText(d);
}

function fill(select, values, label) {
  select.appendChild(new Option("all " + label, ""));
  values.forEach((v) => select.appendChild(new Option(v, v)));
}
fill($("reason"), D.reasons, "reasons"); fill($("klass"), classes, "classes");
classes.forEach((c) => { const o = document.createElement("option"); o.value = c; $("classlist").appendChild(o); });
$("title").textContent = D.title;
const keyHelp = classes.slice(0, 10).map((c, k) => ((k + 1) % 10) + " " + c).join(" \u00b7 ");
$("keys").textContent = "keys: " + keyHelp + " \u00b7 l any class \u00b7 s suggestion \u00b7 x exclude \u00b7 k keep" +
  " \u00b7 u undo \u00b7 arrows move \u00b7 r/c reason/class filter \u00b7 h hide decided \u00b7 " +
  (served ? "q finish" : "d download decisions.csv");
$("download").hidden = served;
$("finish").hidden = !served;

function filtered() {
  const r = $("reason").value, c = $("klass").value, hide = $("hide").checked;
  return items.map((_, i) => i).filter((i) => (!r || items[i].reasons.includes(r)) &&
    (!c || items[i].given === c) && (!hide || !current(items[i].path) || i === visible[cursor]));
}

function layout() {
  const keep = visible[cursor];
  visible = filtered();
  const grid = $("grid"); grid.replaceChildren(...visible.map((i) => tiles[i]));
  cursor = Math.max(0, visible.indexOf(keep) >= 0 ? visible.indexOf(keep) : Math.min(cursor, visible.length - 1));
  show();
}

function show() {
  tiles.forEach((t) => t.classList.remove("cursor"));
  items.forEach((_, i) => paint(i));
  const left = items.filter((it) => !current(it.path)).length;
  const shownLeft = visible.filter((i) => !current(items[i].path)).length;
  $("counter").textContent = left + " of " + items.length + " left" +
    (visible.length !== items.length ? " (" + shownLeft + " of " + visible.length + " shown)" : "");
  document.body.dataset.left = String(left);
  if (visible.length) {
    const t = tiles[visible[cursor]]; t.classList.add("cursor");
    t.scrollIntoView({ block: "nearest" });
  }
}

let chain = Promise.resolve();
const log = D.decisions.slice();  // every row of decisions.csv, then this session's: what `d` downloads
function send(d) {
  d.time = new Date().toISOString().replace(/\.\d+Z$/, "+00:00");
  log.push(d); push(d);
  if (!served) return;
  pending += 1; document.body.dataset.pending = String(pending);
  chain = chain.then(() => fetch("decide", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(d) }).then((r) => r.json().then((j) => { if (!r.ok) throw new Error(j.error || r.statusText); }))
  ).catch((e) => { $("status").textContent = "not saved: " + e.message; document.body.dataset.error = e.message; })
   .finally(() => { pending -= 1; document.body.dataset.pending = String(pending); });
}

function decide(action, label) {
  if (!visible.length) return;
  const it = items[visible[cursor]];
  if (action === "relabel" && label === it.given) action = "keep";
  send({ path: it.path, action: action, new_label: action === "relabel" ? label : "", reason: it.reasons.join("; ") });
  const next = visible.findIndex((i, k) => k > cursor && !current(items[i].path));
  if (next >= 0) cursor = next; else if (cursor < visible.length - 1) cursor += 1;
  $("hide").checked ? layout() : show();
}

function undo() {
  if (!order.length) return;
  const path = order[order.length - 1];
  send({ path: path, action: "undo", new_label: "", reason: "undo" });
  const i = items.findIndex((it) => it.path === path);
  layout();
  const k = visible.indexOf(i); if (k >= 0) { cursor = k; show(); }
}

function columns() {
  if (visible.length < 2) return 1;
  const top = tiles[visible[0]].offsetTop; let n = 0;
  while (n < visible.length && tiles[visible[n]].offsetTop === top) n += 1;
  return Math.max(1, n);
}

function cycle(select) { select.selectedIndex = (select.selectedIndex + 1) % select.options.length; layout(); }

function csv() {
  const q = (v) => '"' + String(v === undefined ? "" : v).replace(/"/g, '""') + '"';
  const rows = [["path", "action", "new_label", "reason", "time"]];
  log.forEach((d) => rows.push([d.path, d.action, d.new_label, d.reason, d.time]));
  return rows.map((r) => r.map(q).join(",")).join("\r\n") + "\r\n";
}

function download() {
  const a = el("a"); a.href = URL.createObjectURL(new Blob([csv()], { type: "text/csv" }));
  a.download = "decisions.csv"; document.body.appendChild(a); a.click(); a.remove();
}

function finish() {
  if (!served) return;
  closing = true;
  chain.then(() => fetch("quit", { method: "POST" })).then(() => {
    $("status").textContent = "saved; the review server has stopped: close this tab";
    document.body.dataset.finished = "1";
  });
}

$("reason").addEventListener("change", layout);
$("klass").addEventListener("change", layout);
$("hide").addEventListener("change", layout);
$("download").addEventListener("click", download);
$("finish").addEventListener("click", finish);
$("pick").addEventListener("keydown", (e) => {
  if (e.key === "Enter") {
    const v = $("pick").value;
    if (classes.includes(v)) { $("picker").hidden = true; $("pick").value = ""; decide("relabel", v); }
    else $("status").textContent = "no class named " + v;
  } else if (e.key === "Escape") { $("picker").hidden = true; }
  e.stopPropagation();
});
document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) {
    if (e.key !== "Escape") return;
    e.target.blur();
  }
  const k = e.key;
  if (k >= "0" && k <= "9") { const c = k === "0" ? 9 : Number(k) - 1; if (c < classes.length) decide("relabel", classes[c]); }
  else if (k === "x") decide("exclude");
  else if (k === "k") decide("keep");
  else if (k === "s") { if (visible.length && items[visible[cursor]].suggested) decide("relabel", items[visible[cursor]].suggested); }
  else if (k === "u") undo();
  else if (k === "l") { $("picker").hidden = false; $("pick").focus(); }
  else if (k === "ArrowRight") { cursor = Math.min(visible.length - 1, cursor + 1); show(); }
  else if (k === "ArrowLeft") { cursor = Math.max(0, cursor - 1); show(); }
  else if (k === "ArrowDown") { cursor = Math.min(visible.length - 1, cursor + columns()); show(); }
  else if (k === "ArrowUp") { cursor = Math.max(0, cursor - columns()); show(); }
  else if (k === "r") cycle($("reason"));
  else if (k === "c") cycle($("klass"));
  else if (k === "h") { $("hide").checked = !$("hide").checked; layout(); }
  else if (k === "d" && !served) download();
  else if (k === "q") finish();
  else return;
  e.preventDefault();
});
window.addEventListener("pagehide", () => { if (served && !closing) navigator.sendBeacon("closed"); });
layout();
document.body.dataset.ready = "1";
})();
"""
