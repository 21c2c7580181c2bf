"""Gitea: the webhook door, its payloads, the API client, the Forge port and the poll sweep."""
