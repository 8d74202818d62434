"""A separate OS process that lines fans up for a concert (for the cross-process test).

    python -m tests.concurrency.queue_issue_worker CONCERT_ID BARRIER USER_ID...

Meets the other process at the cross-process barrier BARRIER, then issues one
token per user from a few threads at once. DATABASE_URL must name the test database.
"""

import os
import sys
import threading


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.test_settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.utils import timezone

    from queueing import services
    from tests.concurrency.helpers import process_barrier

    concert_id, barrier, *user_ids = sys.argv[1:]
    users = list(get_user_model().objects.filter(pk__in=[int(u) for u in user_ids]))
    connections.close_all()
    failures: list[str] = []

    def issue(chunk):
        try:
            for user in chunk:
                services.queue_token_issue(
                    user=user, concert_id=int(concert_id), now=timezone.now()
                )
        except Exception as exc:
            failures.append(repr(exc))
        finally:
            connections.close_all()

    chunks = [users[i::8] for i in range(8)]
    threads = [threading.Thread(target=issue, args=(chunk,)) for chunk in chunks]
    process_barrier(barrier, 2)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
