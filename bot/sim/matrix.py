"""People on a real Matrix homeserver, for the demo and the tests: accounts, rooms, a transcript.

Plain client-server API over httpx (no nio): what a human's client would send, and a reading
of a room's timeline with edits folded into the message they edit.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

_txn = itertools.count(1)


class MatrixApiError(Exception):
    """The homeserver said no; `errcode` is the Matrix error code."""

    def __init__(self, status: int, errcode: str, message: str) -> None:
        super().__init__(f"{status} {errcode}: {message}")
        self.status = status
        self.errcode = errcode


def registration_mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    """The HMAC Synapse's shared-secret registration API wants (admin/v1/register)."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password):
        mac.update(part.encode() + b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


def _check(r: httpx.Response) -> dict[str, Any]:
    data: dict[str, Any] = r.json() if r.content else {}
    if r.status_code >= 400:
        raise MatrixApiError(r.status_code, str(data.get("errcode", "")), str(data.get("error")))
    return data


async def register(
    http: httpx.AsyncClient,
    homeserver: str,
    shared_secret: str,
    localpart: str,
    password: str,
    *,
    admin: bool = False,
) -> Person:
    """Register (or, when taken, log in) an account with Synapse's shared-secret admin API."""
    base = homeserver.rstrip("/")
    nonce = _check(await http.get(f"{base}/_synapse/admin/v1/register"))["nonce"]
    r = await http.post(
        f"{base}/_synapse/admin/v1/register",
        json={
            "nonce": nonce,
            "username": localpart,
            "password": password,
            "admin": admin,
            "mac": registration_mac(shared_secret, nonce, localpart, password, admin),
        },
    )
    if r.status_code == 400 and r.json().get("errcode") == "M_USER_IN_USE":
        return await login(http, homeserver, localpart, password)
    data = _check(r)
    return Person(http, base, data["user_id"], data["access_token"])


async def login(http: httpx.AsyncClient, homeserver: str, user: str, password: str) -> Person:
    base = homeserver.rstrip("/")
    data = _check(
        await http.post(
            f"{base}/_matrix/client/v3/login",
            json={
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user},
                "password": password,
            },
        )
    )
    return Person(http, base, data["user_id"], data["access_token"])


@dataclass
class Person:
    """One account's client: the verbs a human in a room uses."""

    http: httpx.AsyncClient
    homeserver: str
    user_id: str
    token: str

    async def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any
    ) -> dict[str, Any]:
        r = await self.http.request(
            method,
            f"{self.homeserver}{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        return _check(r)

    async def create_room(
        self, name: str, invite: tuple[str, ...] = (), power: dict[str, int] | None = None
    ) -> str:
        body: dict[str, Any] = {"name": name, "preset": "private_chat", "invite": list(invite)}
        if power:
            body["power_level_content_override"] = {"users": {self.user_id: 100, **power}}
        return str((await self.call("POST", "/_matrix/client/v3/createRoom", body))["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.call(
            "POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/invite", {"user_id": user_id}
        )

    async def join(self, room_id: str) -> None:
        await self.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    async def joined_rooms(self) -> list[str]:
        return list((await self.call("GET", "/_matrix/client/v3/joined_rooms"))["joined_rooms"])

    async def send(self, room_id: str, event_type: str, content: dict[str, Any]) -> str:
        txn = f"sim-{next(_txn)}-{uuid.uuid4().hex[:8]}"
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/{event_type}/{txn}"
        return str((await self.call("PUT", path, content))["event_id"])

    async def say(self, room_id: str, text: str, *, msgtype: str = "m.text") -> str:
        return await self.send(room_id, "m.room.message", {"msgtype": msgtype, "body": text})

    async def edit(self, room_id: str, event_id: str, text: str) -> str:
        new = {"msgtype": "m.text", "body": text}
        return await self.send(
            room_id,
            "m.room.message",
            {
                **new,
                "body": f"* {text}",
                "m.new_content": new,
                "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
            },
        )

    async def events(self, room_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """The room's timeline, oldest first (edits and reactions as their own events)."""
        data = await self.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/messages", dir="b", limit=limit
        )
        return list(reversed(data.get("chunk", [])))

    async def messages(self, room_id: str) -> list[Message]:
        return fold(await self.events(room_id))

    async def override_ratelimit(self, user_id: str, per_second: int, burst: int) -> None:
        """Admin only: this user's message rate limit (0/0 = none)."""
        await self.call(
            "POST",
            f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit",
            {"messages_per_second": per_second, "burst_count": burst},
        )

    async def clear_ratelimit(self, user_id: str) -> None:
        await self.call("DELETE", f"/_synapse/admin/v1/users/{quote(user_id)}/override_ratelimit")


@dataclass(frozen=True)
class Message:
    """A room message as a reader sees it: its latest edit applied, its reactions gathered."""

    event_id: str
    sender: str
    msgtype: str
    body: str
    html: str
    thread: str  # the thread root this message is in ("" = the main timeline)
    edits: int
    content: dict[str, Any]  # the shown content (the latest m.new_content when edited)
    reactions: tuple[tuple[str, str], ...]  # (sender, key)
    ts: int


def _relation(event: dict[str, Any]) -> dict[str, Any]:
    rel = event.get("content", {}).get("m.relates_to")
    return rel if isinstance(rel, dict) else {}


def fold(events: list[dict[str, Any]]) -> list[Message]:
    """Messages in timeline order, each with its newest edit (by its own sender) applied."""
    edits: dict[str, list[dict[str, Any]]] = {}
    reactions: dict[str, list[tuple[str, str]]] = {}
    originals: list[dict[str, Any]] = []
    for e in events:
        rel = _relation(e)
        if e.get("type") == "m.reaction" and rel.get("rel_type") == "m.annotation":
            reactions.setdefault(rel["event_id"], []).append((e["sender"], rel.get("key", "")))
        elif e.get("type") == "m.room.message":
            if rel.get("rel_type") == "m.replace":
                edits.setdefault(rel["event_id"], []).append(e)
            else:
                originals.append(e)
    out = []
    for e in originals:
        mine = [x for x in edits.get(e["event_id"], []) if x["sender"] == e["sender"]]
        content = mine[-1]["content"].get("m.new_content", {}) if mine else e["content"]
        rel = _relation(e)
        out.append(
            Message(
                event_id=e["event_id"],
                sender=e["sender"],
                msgtype=str(content.get("msgtype", "")),
                body=str(content.get("body", "")),
                html=str(content.get("formatted_body", "")),
                thread=rel["event_id"] if rel.get("rel_type") == "m.thread" else "",
                edits=len(mine),
                content=content,
                reactions=tuple(reactions.get(e["event_id"], ())),
                ts=int(e.get("origin_server_ts", 0)),
            )
        )
    return out


def transcript(messages: list[Message], width: int = 100) -> str:
    """A readable room transcript: who said what, threads indented, edits and reactions noted."""
    names = {m.sender: m.sender.split(":")[0] for m in messages}
    lines = []
    for m in messages:
        indent = "    ↳ " if m.thread else ""
        edited = f" (edited ×{m.edits})" if m.edits else ""
        kind = " [notice]" if m.msgtype == "m.notice" else ""
        reacts = " ".join(k for s, k in m.reactions)
        lines.append(f"{indent}{names[m.sender]}{kind}{edited}: {m.body.splitlines()[0][:width]}")
        for more in m.body.splitlines()[1:12]:
            if more.strip():
                lines.append(f"{' ' * len(indent)}    {more[:width]}")
        if len(m.body.splitlines()) > 12:
            lines.append(f"{' ' * len(indent)}    …")
        if reacts:
            lines.append(f"{' ' * len(indent)}    reactions: {reacts}")
    return "\n".join(lines)
