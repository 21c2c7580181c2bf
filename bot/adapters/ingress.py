"""The one decoder of a stored delivery: its event name picks the door it came through.

Every delivery is stored before anything acts on it — a Gitea webhook body, a comment the poll
sweep found, a Matrix room event — and the dispatcher turns each into an Incoming (or a reason
it is none of ours) here, once. The doors only check what they must to store it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.adapters.gitea import payload as gitea
from bot.adapters.matrix import payload as matrix
from bot.model import Ignore, Incoming


@dataclass(frozen=True)
class Ingress:
    """Who the bot is on each side, so that its own comments and messages are ignored."""

    gitea_login: str
    matrix_user: str = ""

    def decode(self, event: str, delivery_id: str, body: bytes) -> Incoming | Ignore:
        """The dispatcher's decode port; raises PayloadError for a damaged delivery."""
        if event == matrix.EVENT:
            return matrix.to_incoming(delivery_id, body, self.matrix_user)
        return gitea.to_incoming(event, delivery_id, body, self.gitea_login)
