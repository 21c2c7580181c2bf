"""The bot's HTTP server: the pages a person reads, health and metrics, and the server itself.

The webhook that lets Gitea's deliveries in is Gitea's own door (bot.adapters.gitea.webhook);
bot.adapters.web.server mounts it beside the pages.
"""
