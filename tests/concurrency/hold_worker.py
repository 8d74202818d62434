"""A separate OS process firing seat-hold requests through the full HTTP stack.

    python -m tests.concurrency.hold_worker SCHEDULE_ID BARRIER ATTEMPTS_PER_FAN AUTH:QUEUE ...

Meets the other process at the cross-process barrier BARRIER, then fires. Prints
one JSON line: status-code counts and error codes, and `sequence`, this process's
places in the order shared by both (to show they interleaved). DATABASE_URL must
name the test database.
"""

import json
import os
import random
import sys
import threading
from collections import Counter


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    import django

    django.setup()
    from django.db import connections
    from rest_framework.test import APIClient

    from tests.concurrency.helpers import process_barrier, shared_sequence

    schedule_id, barrier, attempts, *fans = sys.argv[1:]
    counts: Counter = Counter()
    sequence: list[int] = []
    lock = threading.Lock()

    def fire(fan: str) -> None:
        auth, queue_key = fan.split(":")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {auth}", HTTP_X_QUEUE_TOKEN=queue_key)
        rng = random.Random(fan)
        try:
            for _ in range(int(attempts)):
                response = client.post(
                    "/api/v1/reservations",
                    {"schedule_id": int(schedule_id), "seat_number": rng.randint(1, 50)},
                    format="json",
                )
                place = shared_sequence(barrier)
                key = str(response.status_code)
                if response.status_code >= 400 and response.status_code < 500:
                    key += ":" + response.json()["error"]["code"]
                with lock:
                    counts[key] += 1
                    sequence.append(place)
        except Exception as exc:  # counted, so the test sees it
            with lock:
                counts[f"exception:{exc!r}"] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fire, args=(fan,)) for fan in fans]
    process_barrier(barrier, 2)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"counts": counts, "sequence": sequence}))


if __name__ == "__main__":
    main()
