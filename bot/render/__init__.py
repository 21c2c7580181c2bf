"""The render ring: pure functions from records to what people read.

Comment texts by topic (`commands`, `runs`, `verdicts`, `verification`, `status`, `sticky`),
the results table (`report`), Matrix HTML (`richtext`), escaping (`markup`) and the redaction
layer every exit passes through (`redact`). No I/O.
"""
