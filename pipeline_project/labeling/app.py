"""The labeling page's server: a small Starlette app on loopback that serves the page, each queue's items with
the model's guess, the audio around an item, and takes labels (and takes them back).

Every asset the page needs is in the package (`static/`): it works with no network. It answers only to
loopback host names, and a label is changed only by a request carrying the `X-Labeling` header, which a page
of another site cannot send without a preflight this server never grants: no other site can label for you.
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import soundfile as sf
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pipeline_project.labeling.queues import Queue, QueueItem, UnknownItem
from pipeline_project.labeling.store import LabelStore

# The keys that label: digits first, then letters that no other shortcut uses (the page's help lists them all).
CLASS_KEYS = "1234567890qwertyuiopfghjkl"
WRITE_HEADER = "X-Labeling"
STATIC = resources.files("pipeline_project.labeling") / "static"


class Labeling:
    """The queues and their label stores. `load()` builds the queues from the data root; it runs again when the
    page asks for the list of queues, so a rebuilt queue shows on the next reload."""

    def __init__(self, load: Callable[[], dict[str, Queue]], store_path: Callable[[str], Path]):
        self._load = load
        self._store_path = store_path
        self._queues: dict[str, Queue] = {}
        self._stores: dict[str, LabelStore] = {}
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        queues = self._load()
        with self._lock:
            self._queues = queues
            for name in queues:
                self._stores.setdefault(name, LabelStore(self._store_path(name)))

    def names(self) -> list[str]:
        return list(self._queues)

    def queue(self, name: str) -> Queue:
        if name not in self._queues:
            raise UnknownItem(name)
        return self._queues[name]

    def store(self, name: str) -> LabelStore:
        self.queue(name)
        return self._stores[name]

    def items(self, name: str) -> list[dict]:
        """The queue's items with their labels; items labelled earlier that have since left the queue (the
        model learned them, or the queue was rebuilt) come first, from what the store kept of them."""
        queue, labels = self.queue(name), self.store(name).all()
        queued = {item.id for item in queue.items}
        earlier = [
            QueueItem(item_id, record.get("guess") or "", record.get("confidence") or 0.0, record.get("model_version"))
            for item_id, record in sorted(labels.items())
            if item_id not in queued
        ]
        return [
            {
                "id": item.id,
                "guess": item.guess,
                "confidence": item.confidence,
                "model_version": item.model_version,
                "context": item.context,
                "label": labels.get(item.id, {}).get("label"),
            }
            for item in [*earlier, *queue.items]
        ]

    def progress(self, name: str) -> dict:
        labels = self.store(name).all()
        total = len({item.id for item in self.queue(name).items} | set(labels))
        agreeing = sum(record["label"] == record.get("guess") for record in labels.values())
        return {
            "total": total,
            "done": len(labels),
            "left": total - len(labels),
            "agreement": round(agreeing / len(labels), 3) if labels else None,
        }

    def label(self, name: str, item_id: str, label: str) -> dict:
        queue = self.queue(name)
        if label not in queue.classes:
            raise ValueError(f"{label!r} is not a class of the {name} queue ({', '.join(queue.classes)})")
        known = {item.id: item for item in queue.items}
        stored = self.store(name).all()
        if item_id not in known and item_id not in stored:
            raise UnknownItem(item_id)
        item = known.get(item_id)
        guess = item.guess if item else stored[item_id].get("guess")
        confidence = item.confidence if item else stored[item_id].get("confidence")
        version = item.model_version if item else stored[item_id].get("model_version")
        return self.store(name).put(item_id, label, guess, confidence, version)

    def export_rows(self) -> list[dict]:
        return [
            {"queue": name, "item": item_id, **record}
            for name in self.names()
            for item_id, record in sorted(self.store(name).all().items())
        ]


def _queue_summary(labeling: Labeling, name: str) -> dict:
    queue = labeling.queue(name)
    return {"name": name, "title": queue.title, "note": queue.note, "progress": labeling.progress(name)}


def create_app(labeling: Labeling) -> Starlette:
    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return FileResponse(str(STATIC / "index.html"))

    async def queues(request: Request) -> Response:
        labeling.refresh()
        return JSONResponse({"queues": [_queue_summary(labeling, name) for name in labeling.names()]})

    async def queue_view(request: Request) -> Response:
        name = request.path_params["queue"]
        try:
            queue = labeling.queue(name)
        except UnknownItem:
            return error(404, f"no queue named {name!r}")
        return JSONResponse(
            {
                "name": name,
                "title": queue.title,
                "classes": [{"name": c, "key": k} for c, k in zip(queue.classes, CLASS_KEYS)],
                "parts": list(queue.parts),
                "note": queue.note,
                "items": labeling.items(name),
                "progress": labeling.progress(name),
            }
        )

    async def label(request: Request) -> Response:
        if request.headers.get(WRITE_HEADER) != "1":
            return error(403, f"labels change only through the page (the {WRITE_HEADER} header is missing)")
        name, item_id = request.path_params["queue"], request.path_params["item"]
        try:
            if request.method == "DELETE":
                labeling.store(name).remove(item_id)
                return JSONResponse({"progress": labeling.progress(name)})
            body = await request.json()
            record = labeling.label(name, item_id, str(body.get("label", "")))
        except UnknownItem:
            return error(404, f"no item {item_id!r} in queue {name!r}")
        except (ValueError, AttributeError) as problem:
            return error(400, str(problem))
        return JSONResponse({"item": item_id, "record": record, "progress": labeling.progress(name)})

    async def audio(request: Request) -> Response:
        name, item_id, part = (request.path_params[k] for k in ("queue", "item", "part"))
        try:
            queue = labeling.queue(name)
            if part not in queue.parts:
                return error(404, f"the {name} queue has no part {part!r} (it has {', '.join(queue.parts)})")
            samples, rate = queue.audio(item_id, part)
        except (UnknownItem, FileNotFoundError):
            return error(404, f"no audio for item {item_id!r} in queue {name!r}")
        buffer = io.BytesIO()
        sf.write(buffer, samples.T, rate, format="WAV", subtype="PCM_16")
        return Response(buffer.getvalue(), media_type="audio/wav", headers={"Cache-Control": "max-age=3600"})

    async def export(request: Request) -> Response:
        if request.path_params["format"] not in ("csv", "json"):
            return error(404, "labels export as labels.json or labels.csv")
        rows = labeling.export_rows()
        if request.path_params["format"] == "csv":
            out = io.StringIO()
            columns = ["queue", "item", "label", "guess", "confidence", "model_version", "labelled_at"]
            writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
            body, media = out.getvalue(), "text/csv"
        else:
            body, media = json.dumps({"labels": rows}, indent=1), "application/json"
        disposition = f'attachment; filename="labels.{request.path_params["format"]}"'
        return Response(body, media_type=media, headers={"Content-Disposition": disposition})

    routes = [
        Route("/", index),
        Route("/api/queues", queues),
        Route("/api/queues/{queue}", queue_view),
        Route("/api/queues/{queue}/labels/{item:path}", label, methods=["PUT", "DELETE"]),
        Route("/api/queues/{queue}/audio/{item}/{part}.wav", audio),
        Route("/api/export.{format:str}", export),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]"])]
    return Starlette(routes=routes, middleware=middleware)


def serve(labeling: Labeling, port: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the page on 127.0.0.1:`port` (0: any free port) until interrupted."""
    import uvicorn

    config = uvicorn.Config(create_app(labeling), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    if on_ready is not None:
        original = server.startup

        async def startup(sockets=None):
            await original(sockets)
            bound = server.servers[0].sockets[0].getsockname()[1]
            on_ready(f"http://127.0.0.1:{bound}/")

        server.startup = startup
    server.run()
