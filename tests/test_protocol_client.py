"""The load test's script-level sessions read what Streamlit sends and press what a browser presses.

Built from Streamlit's own protobufs, so a renamed field or element kind fails here, not silently
in a 30-session benchmark row (tests/test_load.py drives a real server with them).
"""

from __future__ import annotations

import asyncio

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from sparseviz.app.protocol_client import ProtocolSession


def _element(**element: dict[str, str]) -> bytes:
    """One "draw this element" message, as the server sends it."""
    return ForwardMsg(delta={"new_element": element}).SerializeToString()


def _session() -> ProtocolSession:
    return ProtocolSession("http://127.0.0.1:8501", {"image": "coins", "seed": "2"})


def test_reads_the_run_button_the_result_metric_queue_lines_and_exceptions() -> None:
    session = _session()
    start = ForwardMsg()
    start.new_session.page_script_hash = "page-hash"
    session.read(start.SerializeToString())

    for element in ({"heading": {"body": "What efficientnet_lite0 sees: top-5"}},
                    {"button": {"id": "other", "label": "Stop"}},
                    {"button": {"id": "run-id", "label": "Run attack"}},
                    {"alert": {"body": "The attack queued, 2 ahead of you, about 20 s."}},
                    {"alert": {"body": "The attack queued, 2 ahead of you, about 20 s."}},
                    {"progress": {"text": "optimize: step 3/100"}}):
        session.read(_element(**element))
    assert session.page_hash == "page-hash"
    assert session.ready and session.button_id == "run-id"
    assert session.lines == ["The attack queued, 2 ahead of you, about 20 s.", "optimize: step 3/100"]
    assert session.pixels is None and session.exceptions == 0
    session.read(_element(metric={"label": "pixels changed", "body": "38"}))
    session.read(_element(exception={"message": "boom"}))
    assert session.pixels == 38 and session.exceptions == 1


def test_follows_the_query_string_the_page_sets() -> None:
    session = _session()
    changed = ForwardMsg()
    changed.page_info_changed.query_string = "image=coins&seed=2&weight=1.0"
    session.read(changed.SerializeToString())
    assert session.query_string == "image=coins&seed=2&weight=1.0"


def test_pressing_run_sends_the_buttons_trigger_with_the_page_and_query() -> None:
    session = _session()
    session.page_hash = "page-hash"
    sent: list[bytes] = []

    class Socket:
        async def send(self, data: bytes) -> None:
            sent.append(data)

    session.socket = Socket()
    asyncio.run(session.rerun(trigger="run-id"))
    asyncio.run(session.rerun())
    pressed, plain = (BackMsg.FromString(data).rerun_script for data in sent)
    assert pressed.query_string == "image=coins&seed=2" and pressed.page_script_hash == "page-hash"
    assert [(w.id, w.trigger_value) for w in pressed.widget_states.widgets] == [("run-id", True)]
    assert not plain.widget_states.widgets
