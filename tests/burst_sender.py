"""Send pre-signed webhook deliveries from a process of its own, as Gitea would from its own
machine: a test's burst must not eat the CPU of the event loop the bot under test runs on.

`python3 -m tests.burst_sender DELIVERIES.json URL CONCURRENCY` — the file is a list of
`{"headers": {...}, "body": "<base64>"}`; prints `sent N` every 50 and `done N STATUSES`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections import Counter
from pathlib import Path

import httpx


async def main(path: str, url: str, concurrency: int) -> None:
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    statuses: Counter[int] = Counter()
    sem = asyncio.Semaphore(concurrency)
    sent = 0

    async def one(http: httpx.AsyncClient, item: dict[str, object]) -> None:
        nonlocal sent
        async with sem:
            body = base64.b64decode(str(item["body"]))
            headers = item["headers"]
            assert isinstance(headers, dict)
            resp = await http.post(url, content=body, headers=headers)
            statuses[resp.status_code] += 1
            sent += 1
            if sent % 50 == 0:
                print(f"sent {sent}", flush=True)

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(one(http, i) for i in items))
    print(f"done {sent} {json.dumps(dict(statuses))}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
