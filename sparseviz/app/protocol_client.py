"""Script-level sessions for the load test: Streamlit's own websocket protocol, no browser.

Thirty Chromium renderers do not fit on a 2-core machine next to the server they measure, so
beyond a handful of browsers each session is one websocket that speaks what the browser
speaks (``BackMsg`` / ``ForwardMsg`` protobufs from ``streamlit.proto``): it opens the page
with its query string, waits for the first run to draw "Run attack", sends the form's submit
trigger, and reads the page's elements as the server sends them until the "pixels changed"
metric arrives. The server cannot tell it from a browser tab: the session, its script run,
its polling loop and its pool job are the real ones. What is not measured is the browser's
own rendering (Plotly, images), which is the client's cost, not the server's.

Uses the ``websockets`` package (a dependency of Streamlit itself). ``benchmarks/load_test.py
--clients protocol`` drives its sessions with it.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates

from .harness import SessionRecord

READY_TEXT = "sees: top-5"
RESULT_LABEL = "pixels changed"
BUTTON_LABEL = "Run attack"


class ProtocolSession:
    """One websocket session: the page's elements as last sent, and a way to press its submit button."""

    def __init__(self, url: str, query: dict[str, str]) -> None:
        self.url, self.query_string = url, urllib.parse.urlencode(query)
        self.page_hash = ""
        self.button_id: str | None = None
        self.ready = False
        self.pixels: int | None = None
        self.exceptions = 0
        self.lines: list[str] = []
        self.socket: Any = None

    async def connect(self) -> None:
        import websockets
        from websockets.typing import Origin, Subprotocol

        parts = urllib.parse.urlsplit(self.url)
        self.socket = await websockets.connect(
            f"ws://{parts.netloc}/_stcore/stream", subprotocols=[Subprotocol("streamlit")], max_size=None,
            origin=Origin(f"http://{parts.netloc}"), open_timeout=60, ping_interval=None, close_timeout=1)
        await self.rerun()

    def loaded(self) -> bool:
        """The first run has drawn the page: its model panel and the Run attack button."""
        return self.ready and self.button_id is not None

    async def rerun(self, trigger: str | None = None) -> None:
        states = WidgetStates(widgets=[WidgetState(id=trigger, trigger_value=True)] if trigger else [])
        message = BackMsg(rerun_script=ClientState(query_string=self.query_string, widget_states=states,
                                                   page_script_hash=self.page_hash))
        await self.socket.send(message.SerializeToString())

    def read(self, data: bytes) -> None:
        """Keep what the load test looks at from one ForwardMsg."""
        message = ForwardMsg.FromString(data)
        kind = message.WhichOneof("type")
        if kind == "new_session":
            self.page_hash = message.new_session.page_script_hash
        elif kind == "page_info_changed":
            self.query_string = message.page_info_changed.query_string
        elif kind == "delta" and message.delta.WhichOneof("type") == "new_element":
            self.element(message.delta.new_element)

    def element(self, element: Any) -> None:
        kind = element.WhichOneof("type")
        if kind == "button" and element.button.label == BUTTON_LABEL:
            self.button_id = element.button.id
        elif kind == "exception":
            self.exceptions += 1
        elif kind == "metric" and element.metric.label.startswith(RESULT_LABEL) and element.metric.body.strip():
            self.pixels = int(element.metric.body.replace(",", "").split()[0])
        elif kind in ("alert", "progress"):
            text = (element.alert.body if kind == "alert" else element.progress.text).strip()
            if text and (not self.lines or self.lines[-1] != text):
                self.lines.append(text)
        elif kind in ("markdown", "heading", "text") and READY_TEXT in getattr(element, kind).body:
            self.ready = True

    async def until(self, done: Callable[[], bool], deadline: float) -> bool:
        """Read messages until ``done()`` holds (True) or ``deadline`` (a time.monotonic() value) passes (False)."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                self.read(await asyncio.wait_for(self.socket.recv(), timeout=remaining))
            except asyncio.TimeoutError:
                return False
        return True


async def _drive(url: str, queries: list[dict[str, str]], timeout_s: float) -> tuple[float, list[SessionRecord]]:
    sessions = [ProtocolSession(url, query) for query in queries]
    records = [SessionRecord(query) for query in queries]
    deadline = time.monotonic() + timeout_s
    for session in sessions:  # one page load at a time, as a class opening the link
        await session.connect()
    await asyncio.gather(*(s.until(s.loaded, deadline) for s in sessions))
    for session in sessions:
        session.lines.clear()
    started = time.monotonic()
    deadline = started + timeout_s

    async def press(session: ProtocolSession, record: SessionRecord) -> None:
        if session.button_id is None:
            return
        record.clicked = time.monotonic() - started
        session.pixels = None  # the result must come from the run the click starts (a shipped demo shows one before)
        await session.rerun(trigger=session.button_id)
        if await session.until(lambda: session.pixels is not None, deadline):
            record.seconds = time.monotonic() - started - record.clicked
            record.pixels = session.pixels
        record.exceptions, record.lines = session.exceptions, session.lines

    try:
        await asyncio.gather(*(press(s, r) for s, r in zip(sessions, records)))
    finally:  # a tab closing; the server may answer the close frame late while its scripts run
        await asyncio.gather(*(session.socket.close() for session in sessions))
    return started, records


def drive(url: str, queries: list[dict[str, str]], *, timeout_s: float = 600.0) -> tuple[float, list[SessionRecord]]:
    """Like ``sparseviz.app.harness.drive`` (same records), with protocol sessions instead of browser pages."""
    return asyncio.run(_drive(url, queries, timeout_s))
