"""Uploads a session keeps across page visits.

Streamlit empties a file uploader when the user leaves its page. The Upload and Study pages therefore hold their
last files and the prediction made from them in ``st.session_state``: coming back shows them again (nothing is
lost), and a threshold or view change re-gates the held outputs instead of running the models again. The models
run again only for other files or other models. Clearing the uploader (its ``on_change``) forgets them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import streamlit as st

Files = TypeVar("Files")
Value = TypeVar("Value")


@dataclass
class Held(Generic[Files, Value]):
    key: str  # digest of the files and the models that made ``value``
    files: Files
    value: Value


def digest(files: list[tuple[str, bytes]], models_key: str) -> str:
    """A name for these (file name, bytes) pairs run through these models."""
    sha = hashlib.sha256(models_key.encode())
    for name, data in files:
        sha.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    return sha.hexdigest()


def hold(slot: str, files: Files, key: str, compute: Callable[[Files], Value]) -> Held[Files, Value]:
    """The value held in ``slot`` for ``key``; computed from ``files`` (the previous value freed first) when the
    slot holds another key."""
    held = st.session_state.get(slot)
    if held is None or held.key != key:
        st.session_state.pop(slot, None)  # free the previous prediction before making the next one
        st.session_state[slot] = Held(key, files, compute(files))
    return st.session_state[slot]


def held_files(slot: str) -> Files | None:
    """The files the slot holds (they survive a page switch that emptied the uploader), or None."""
    held = st.session_state.get(slot)
    return None if held is None else held.files


def forget(slot: str) -> None:
    st.session_state.pop(slot, None)


def forget_when_emptied(slot: str, uploader_key: str) -> Callable[[], None]:
    """An uploader's ``on_change``: the user emptying the box forgets the held files too."""
    def callback() -> None:
        if not st.session_state.get(uploader_key):
            forget(slot)
    return callback


def offer_to_forget(slot: str, what: str, button_label: str, button_key: str) -> None:
    """Say that ``what`` (held in ``slot``) is shown again although its upload box is empty, with a button to forget
    it."""
    st.info(f"Showing {what} you uploaded earlier in this session (upload boxes empty when you leave the page). "
            "Upload new files to replace what is shown.")
    st.button(button_label, on_click=forget, args=(slot,), key=button_key)
