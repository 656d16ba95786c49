"""Pydantic models of the event (§3) and of each type's content (§6).

Writers build events through these models so that nothing malformed is ever signed;
readers validate a known type's content with ``content_problem`` (``bad_content``) and
keep unknown extra keys, because the signature covers them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Content(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Attestation(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    type: str
    issuer: str
    id_token: str


class MessageContent(_Content):
    body: str
    msgtype: Literal["m.text", "m.notice", "m.emote"]
    format: str | None = None
    formatted_body: str | None = None


class MemberContent(_Content):
    membership: Literal["join", "leave", "invite", "ban", "kick"]
    displayname: str | None = None
    public_key: str | None = None
    attestation: Attestation | None = None
    revokes: list[str] | None = None
    user_id: str | None = None


class RedactionContent(_Content):
    redacts: str
    reason: str | None = None


class NewContent(_Content):
    body: str
    msgtype: Literal["m.text", "m.notice", "m.emote"]


class EditContent(_Content):
    replaces: str
    new_content: NewContent


class ReactionContent(_Content):
    relates_to: str
    reaction: str = Field(min_length=1)


class TypingContent(_Content):
    typing: bool


CONTENT_MODELS: dict[str, type[_Content]] = {
    "m.room.message": MessageContent,
    "m.room.member": MemberContent,
    "m.room.redaction": RedactionContent,
    "m.room.edit": EditContent,
    "m.room.reaction": ReactionContent,
    "m.room.typing": TypingContent,
}


_MSGTYPES = frozenset(("m.text", "m.notice", "m.emote"))
_TEXT_OR_NONE = (str, type(None))


def _plain_message(content: dict[str, Any]) -> bool:
    """A message content MessageContent accepts, checked without building the model: most
    events are messages, and validating each was ~10% of a sync's work outside Ed25519."""
    msgtype = content.get("msgtype")
    return (
        type(content.get("body")) is str
        and type(msgtype) is str
        and msgtype in _MSGTYPES
        and type(content.get("format")) in _TEXT_OR_NONE
        and type(content.get("formatted_body")) in _TEXT_OR_NONE
    )


def content_problem(event_type: str, content: dict[str, Any]) -> str | None:
    """Why a known type's content cannot be applied to state, or None (unknown types: None)."""
    if event_type == "m.room.message" and _plain_message(content):
        return None
    model = CONTENT_MODELS.get(event_type)
    if model is None:
        return None
    try:
        model.model_validate(content)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "content"
        return f"{where}: {first['msg']}"
    return None


class Event(BaseModel):
    """A signed event as written to a log line: all nine keys, nulls included."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    event_id: str
    room_id: str
    timestamp_ms: int = Field(ge=0, le=2**53 - 1)
    sender_id: str = Field(min_length=1, max_length=256)
    type: str
    parent_event_id: str | None
    prev_event_hash: str | None
    signature: str
    content: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="python")
