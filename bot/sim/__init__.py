"""The simulated world for the demo and tests: Gitea, a CI host, the harness, Matrix, deliveries.

Outside the bot's rings: it imports only the config schema and the model, and the bot never
imports it (only bot.demo and the tests do).
"""
