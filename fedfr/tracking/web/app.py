"""The web view's FastAPI application over a :class:`~fedfr.tracking.web.state.LiveView`.

Routes:

* ``/``: one tile per camera (live MJPEG), per-camera status, the identities in view;
* ``/gallery``: crops per global identity across cameras;
* ``/stream/{camera}.mjpg``: ``multipart/x-mixed-replace`` JPEG stream of the annotated
  camera (boxes + global ids), at most ``max_fps`` frames per second per client;
* ``/frame/{camera}.jpg`` (``?index=N`` for a frame still in the ring buffer),
  ``/crop/{global_id}/{camera}.jpg``;
* ``/api/status``, ``/api/gallery``, ``/api/events?since=SEQ`` (JSON), ``/healthz``;
* ``/ws``: WebSocket of JSON events (``start``, ``track_start``, ``track_end``, ``identity``,
  ``match``, ``end``, and a ``status`` message every ``status_every`` seconds);
* ``/metrics``: Prometheus text format (:mod:`fedfr.tracking.web.metrics`).
"""

from __future__ import annotations

import asyncio
import html
import json
import threading
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from fedfr.tracking.web.metrics import exposition
from fedfr.tracking.web.state import LiveView

BOUNDARY = "frame"


def create_app(view: LiveView, max_fps: float = 15.0, status_every: float = 1.0,
               poll_s: float = 0.05, resend_s: float = 1.0):
    """The FastAPI app. ``app.state.stopping`` (a threading.Event) ends open streams and
    WebSockets when set (server shutdown)."""
    app = FastAPI(title="fedfr track", docs_url=None, redoc_url=None, openapi_url=None)
    stopping = threading.Event()
    app.state.stopping = stopping
    app.state.view = view

    def known(camera: str) -> None:
        if camera not in view.camera_names():
            raise HTTPException(404, f"unknown camera {camera!r}")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return _index_page(view)

    @app.get("/gallery", response_class=HTMLResponse)
    def gallery_page() -> str:
        return _gallery_page(view)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/api/status")
    def status() -> JSONResponse:
        return JSONResponse(_jsonable(view.status()))

    @app.get("/api/gallery")
    def gallery() -> JSONResponse:
        return JSONResponse(view.gallery())

    @app.get("/api/events")
    def events(since: int = Query(0, ge=0)) -> JSONResponse:
        return JSONResponse(_jsonable(view.events_since(since)))

    @app.get("/metrics")
    def metrics() -> Response:
        body, ctype = exposition(view)
        return Response(body, media_type=ctype)

    @app.get("/frame/{camera}.jpg")
    def frame(camera: str, index: int | None = None) -> Response:
        known(camera)
        got = view.jpeg(camera, index)
        if got is None:
            raise HTTPException(404, f"camera {camera!r}: no such frame"
                                     + ("" if index is None else f" {index} in the ring"))
        return Response(got[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/crop/{global_id}/{camera}.jpg")
    def crop(global_id: int, camera: str) -> Response:
        data = view.crop_jpeg(global_id, camera)
        if data is None:
            raise HTTPException(404, f"no crop of identity {global_id} in camera {camera!r}")
        return Response(data, media_type="image/jpeg")

    @app.get("/stream/{camera}.mjpg")
    async def stream(camera: str) -> StreamingResponse:
        known(camera)

        async def parts():
            # each part is closed by the next boundary at once, and the newest frame is sent
            # again every ``resend_s`` when nothing new came (a paused or finished run):
            # browsers show a part only once more of the stream has arrived
            sent, gap, last = -1, 1.0 / max_fps, 0.0
            loop = asyncio.get_running_loop()
            yield f"--{BOUNDARY}\r\n".encode()
            while not stopping.is_set():
                shot = view.latest(camera)
                if shot is not None and (shot.seq != sent or loop.time() - last > resend_s):
                    got = await asyncio.to_thread(view.jpeg, camera)
                    if got is not None:
                        sent, last = got[0], loop.time()
                        yield (f"Content-Type: image/jpeg\r\nContent-Length: {len(got[1])}"
                               "\r\n\r\n").encode() + got[1] + f"\r\n--{BOUNDARY}\r\n".encode()
                        await asyncio.sleep(gap)
                        continue
                await asyncio.sleep(poll_s)

        return StreamingResponse(parts(), headers={"Cache-Control": "no-store"},
                                 media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}")

    @app.websocket("/ws")
    async def ws(socket: WebSocket, since: int | None = None) -> None:
        await socket.accept()
        status_doc = _jsonable(view.status())
        await socket.send_text(json.dumps({"type": "status", **status_doc}))
        seq = max(0, status_doc["events"] - 100) if since is None else since
        loop = asyncio.get_running_loop()
        next_status = loop.time() + status_every
        try:
            while not stopping.is_set():
                for ev in view.events_since(seq):
                    await socket.send_text(json.dumps(_jsonable(ev)))
                    seq = ev["seq"]
                if loop.time() >= next_status:
                    next_status = loop.time() + status_every
                    await socket.send_text(json.dumps({"type": "status",
                                                       **_jsonable(view.status())}))
                await asyncio.sleep(poll_s)
            await socket.close()
        except WebSocketDisconnect:
            pass

    return app


def _jsonable(obj):
    """NaN / inf -> None (JSON has neither)."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


_STYLE = """body{font-family:sans-serif;background:#111;color:#eee;margin:12px}
a{color:#8cf} .tiles{display:flex;flex-wrap:wrap;gap:8px}
.tile{background:#222;padding:4px} .tile img{display:block;max-width:640px;width:100%}
table{border-collapse:collapse} td,th{padding:2px 8px;border-bottom:1px solid #333}
.ident{display:inline-block;background:#222;margin:4px;padding:4px;vertical-align:top}
.ident img{height:128px;margin:2px}"""


def _identity_items(view: LiveView) -> str:
    items = []
    for ident in sorted(view.gallery(), key=lambda i: i["global_id"]):
        cams = ", ".join(f"{html.escape(c)} (tracks {', '.join(map(str, r['tracks']))})"
                         for c, r in ident["cameras"].items())
        items.append(f"<li id='g{ident['global_id']}'>G{ident['global_id']}: {cams}</li>")
    return "\n".join(items)


def _camera_rows(view: LiveView) -> str:
    rows = []
    for c, st in view.status()["cameras"].items():
        lat = st["latency_s"]
        lat = "" if lat != lat else f"{1e3 * lat:.0f}"
        rows.append(f"<tr><td>{html.escape(c)}</td><td>{st['frames']}</td>"
                    f"<td>{st['fps']:.1f}</td><td>{lat}</td><td>{st['dropped']}</td>"
                    f"<td>{st['queue_depth']}</td><td>{st['tracks']}</td></tr>")
    return "".join(rows)


def _index_page(view: LiveView) -> str:
    tiles = "\n".join(
        f"<div class='tile'><div>{html.escape(c)}</div>"
        f"<img id='cam-{html.escape(c)}' alt='camera {html.escape(c)}' "
        f"src='/stream/{quote(c)}.mjpg'></div>" for c in view.camera_names())
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fedfr track</title>
<style>{_STYLE}</style></head><body>
<h1>fedfr track: live view</h1>
<p><a href="/gallery">gallery</a> &middot; <a href="/api/status">status</a> &middot;
<a href="/metrics">metrics</a> &middot; <span id="state"></span></p>
<div class="tiles">{tiles}</div>
<h2>Cameras</h2><table id="cams"><tr><th>camera</th><th>frames</th><th>FPS</th>
<th>latency ms</th><th>dropped</th><th>queue</th><th>tracks</th></tr>{_camera_rows(view)}
</table>
<h2>Identities</h2><ul id="identities">{_identity_items(view)}</ul>
<h2>Events</h2><ul id="events"></ul>
<script>
function row(c, s) {{
  const l = s.latency_s === null ? '' : (1000 * s.latency_s).toFixed(0);
  return `<tr><td>${{c}}</td><td>${{s.frames}}</td><td>${{s.fps.toFixed(1)}}</td>
    <td>${{l}}</td><td>${{s.dropped}}</td><td>${{s.queue_depth}}</td><td>${{s.tracks}}</td></tr>`;
}}
function showStatus(s) {{
  document.getElementById('state').textContent = s.running ? 'running' :
    (s.error ? 'failed: ' + s.error : 'finished');
  let h = document.querySelector('#cams tr').outerHTML;
  for (const [c, v] of Object.entries(s.cameras)) h += row(c, v);
  document.getElementById('cams').innerHTML = h;
}}
async function refreshIdentities() {{
  const ids = await (await fetch('/api/gallery')).json();
  ids.sort((a, b) => a.global_id - b.global_id);
  document.getElementById('identities').innerHTML = ids.map(i => `<li id="g${{i.global_id}}">` +
    `G${{i.global_id}}: ` + Object.entries(i.cameras).map(([c, r]) =>
      `${{c}} (tracks ${{r.tracks.join(', ')}})`).join(', ') + '</li>').join('');
}}
const ws = new WebSocket(`ws://${{location.host}}/ws`);
ws.onmessage = (m) => {{
  const e = JSON.parse(m.data);
  if (e.type === 'status') {{ showStatus(e); return; }}
  const li = document.createElement('li');
  li.textContent = JSON.stringify(e);
  const list = document.getElementById('events');
  list.prepend(li);
  while (list.children.length > 30) list.lastChild.remove();
  if (e.type !== 'track_end') refreshIdentities();
}};
</script></body></html>"""


def _gallery_page(view: LiveView) -> str:
    blocks = []
    for ident in view.gallery():
        gid = ident["global_id"]
        crops = "".join(
            f"<figure style='display:inline-block;margin:2px'>"
            f"<img src='/crop/{gid}/{quote(c)}.jpg' alt='G{gid} in {html.escape(c)}'>"
            f"<figcaption>{html.escape(c)}: {', '.join(map(str, r['tracks']))}</figcaption>"
            f"</figure>" for c, r in ident["cameras"].items() if r["crop"])
        blocks.append(f"<div class='ident' id='g{gid}'><div>G{gid} &middot; "
                      f"{len(ident['cameras'])} camera(s)</div>{crops}</div>")
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>fedfr gallery</title>
<meta http-equiv="refresh" content="5"><style>{_STYLE}</style></head><body>
<h1>Gallery: crops per global identity</h1><p><a href="/">live view</a></p>
{''.join(blocks) or '<p>no identities yet</p>'}</body></html>"""
