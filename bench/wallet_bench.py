"""Wallet benchmark. Run:  sh .ci/dev python -m bench.wallet_bench

Side by side, one run, one gunicorn config:
  1. POST /bench/contended        UPDATE ... n = n + 1 under FOR UPDATE on 1 of 50 rows
  2. POST /api/v1/wallet/charges  every request charging one hot wallet
  3. POST /api/v1/wallet/charges  spread over 1,000 fans
"""

from __future__ import annotations

from bench.common import (
    DURATION,
    ROOT,
    Server,
    recreate_database,
    save,
    seed_fans,
    setup_django,
    wrk,
)

FANS = 1000


def main() -> None:
    recreate_database()
    setup_django()
    from django.db import connection

    from bench.baseline import ensure_counter_table

    ensure_counter_table()
    with connection.cursor() as cursor:
        seed_fans(cursor, FANS)
        cursor.execute(
            "INSERT INTO wallet_wallet (user_id, balance, updated_at) "
            "SELECT g, 0, now() FROM generate_series(1, %s) g",
            [FANS],
        )
        cursor.execute("SELECT 'Token ' || key FROM authtoken_token ORDER BY user_id")
        auth = [row[0] for row in cursor.fetchall()]
        cursor.execute("VACUUM ANALYZE")
    connection.close()

    body = '{"amount": 1000}'
    results: dict = {"duration_s": DURATION}
    with Server() as server:
        wrk(server.url, "/bench/bare", duration=3)
        results["contended_baseline"] = wrk(server.url, "/bench/contended", method="POST")
        results["charge_hot_wallet"] = wrk(
            server.url,
            "/api/v1/wallet/charges",
            method="POST",
            lines=[auth[0]],
            header="Authorization",
            body=body,
        )
        results["charge_1000_fans"] = wrk(
            server.url,
            "/api/v1/wallet/charges",
            method="POST",
            lines=auth,
            header="Authorization",
            body=body,
        )
    r = results
    base = r["contended_baseline"]["rps"]
    r["hot_vs_contended"] = round(r["charge_hot_wallet"]["rps"] / base, 3)
    r["spread_vs_contended"] = round(r["charge_1000_fans"]["rps"] / base, 3)
    path = save("wallet", results)
    print("\n| measure | result | target |")
    print("|---|---|---|")
    print(f"| contended UPDATE baseline | {base} req/s | reference |")
    h, s = r["charge_hot_wallet"], r["charge_1000_fans"]
    print(
        f"| charges, one hot wallet (201 {h['ok']}, other {h['other']}) | {h['rps']} req/s = "
        f"{r['hot_vs_contended']:.0%} | >= 80% |"
    )
    print(
        f"| charges over 1,000 fans (201 {s['ok']}, other {s['other']}) | {s['rps']} req/s = "
        f"{r['spread_vs_contended']:.0%} | reported |"
    )
    print(f"\nraw results: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
