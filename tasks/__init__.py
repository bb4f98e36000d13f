"""The Taskiq side: the broker and schedule source on Redis (queue.py), the expiry scheduler the
API uses (scheduling.py), the follow-up tasks (follow_ups.py) and the loop `cinema worker` runs
(loop.py). Tasks call the services; nothing in cinema/ outside cinema/bootstrap.py imports
this package (docs/expiry.md)."""
