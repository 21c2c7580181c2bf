"""redfix's exception tree: every error the bot raises on purpose is one of these (stdlib only).

    RedfixError
    ├── InputError (also a ValueError): something from outside is malformed — a webhook or
    │   stored delivery (PayloadError), a config file (ConfigError), signature rules
    │   (RulesError), a run's results.json (ResultsError). Its message names what was wrong
    │   and is safe to show to whoever sent it.
    ├── Unavailable: a part the bot depends on cannot answer *now* (ForgeUnavailable); the
    │   work stays pending and is tried again.
    └── ExternalError: a part answered with a failure — Gitea (GiteaError), a CI host
        (RunnerError), the homeserver (MatrixError), a delivery (DeliveryError), the store
        (StoreError). Where trying again can help, the error says so (`retryable`).

Callers catch the narrowest class that they can act on; a loop that must survive anything
(dispatcher, outbox, sync) catches `Exception` and records it with a reference id.
"""

from __future__ import annotations


class RedfixError(Exception):
    """The base of every error redfix raises on purpose."""


class InputError(RedfixError, ValueError):
    """Malformed input from outside the bot; the message says what and where."""


class Unavailable(RedfixError):
    """A part the bot needs cannot answer now; what waits on it is tried again later."""


class ExternalError(RedfixError):
    """A part the bot talks to answered with a failure, or could not be reached at all."""


class PayloadError(InputError):
    """A delivery body (a signed webhook, a polled comment, a stored Matrix event) that is not
    a usable payload; the message is safe to answer with."""


class ForgeUnavailable(Unavailable):
    """The forge (or the homeserver) could not answer now; the delivery stays pending and is
    tried again."""
