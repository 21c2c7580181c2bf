"""Matrix: the sync loop that lets room commands in, their payloads, and the sender."""
