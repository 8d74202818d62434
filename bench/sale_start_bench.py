"""A scheduled sale's start at scale (issue 16). Run:  sh .ci/dev python -m bench.sale_start_bench

The start shuffles the whole pre-queue into the line in one transaction, holding the
concert's line lock exclusively: line-ups of that concert wait for it. This measures
how long that takes with 1,000, 20,000 and 200,000 fans in the pre-queue
(`BENCH_PRE_QUEUE_SIZES=1000,20000,200000`), each in a fresh concert, and how long a
line-up that arrives during the start waits. Baseline in the same run: one admission
run with the same number waiting (the other job that takes the line lock).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import timedelta

from bench.common import bench_concert, recreate_database, save, seed_fans, setup_django

SIZES = [int(n) for n in os.environ.get("BENCH_PRE_QUEUE_SIZES", "1000,20000,200000").split(",")]


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection, connections
    from django.utils import timezone

    from queueing import services
    from queueing.models import QueueToken, WaitingRoom

    biggest = max(SIZES)
    with connection.cursor() as cursor:
        seed_fans(cursor, biggest + 10)
    rows = []
    for size in SIZES:
        start = timezone.now() + timedelta(minutes=1)
        concert, _ = bench_concert(f"sale-{size}", max_active=100)
        WaitingRoom.objects.filter(pk=concert.pk).update(sale_starts_at=start, pre_queue_minutes=60)
        with connection.cursor() as cursor:  # the pre-queue, as line-ups in the window make it
            cursor.execute(
                """
                INSERT INTO queueing_queuetoken (key, concert_id, user_id, status, created_at,
                    last_seen_at, end_reason)
                SELECT md5(random()::text) || md5(g::text), %s, g, 'pre_queue', now(), now(), ''
                FROM generate_series(1, %s) g
                """,
                [concert.pk, size],
            )
        waited: list[float] = []

        def late_line_up(concert_id: int = concert.pk, start=start, waited=waited) -> None:
            from django.contrib.auth import get_user_model

            fan = get_user_model().objects.get(pk=biggest + 1)
            began = time.perf_counter()
            services.queue_token_issue(user=fan, concert_id=concert_id, now=start)
            waited.append(time.perf_counter() - began)
            connections.close_all()

        began = time.perf_counter()
        late = threading.Timer(0.05, late_line_up)  # a fan arriving during the start
        late.start()
        shuffled = services.queue_sale_start(concert_id=concert.pk, now=start)
        took = time.perf_counter() - began
        late.join()
        assert shuffled == size
        last = QueueToken.objects.filter(concert=concert).order_by("-id").first()
        assert last.user_id == biggest + 1  # the late fan stands behind the whole pre-queue
        # Baseline: an admission run with the same line (the other line-lock holder).
        WaitingRoom.objects.filter(pk=concert.pk).update(max_active=200)
        t = time.perf_counter()
        services.queue_admit_next(concert_id=concert.pk, now=timezone.now())
        admit = time.perf_counter() - t
        rows.append(
            {
                "pre_queue": size,
                "start_ms": round(took * 1000, 1),
                "late_line_up_waited_ms": round(waited[0] * 1000, 1),
                "admission_run_100_free_ms": round(admit * 1000, 1),
            }
        )
        print(rows[-1], flush=True)

    print(
        "\n| fans in the pre-queue | the start (shuffle) | a line-up arriving during it | "
        "baseline: one admission run, 100 free |"
    )
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['pre_queue']:,} | {r['start_ms']:,} ms | {r['late_line_up_waited_ms']:,} ms "
            f"| {r['admission_run_100_free_ms']:,} ms |"
        )
    print(f"\nraw results: {save('sale_start', {'rows': rows})}")


if __name__ == "__main__":
    main()
