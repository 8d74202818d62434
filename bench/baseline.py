"""Baseline endpoints the benchmarks compare against, mounted only with BENCH_ENDPOINTS=1.

They run in the same app, on the same server config, as the endpoints measured:
- /bench/bare: a DRF view with no database and no authentication;
- /bench/select/<pk>: one indexed primary-key SELECT;
- /bench/contended: UPDATE ... SET n = n + 1 under select_for_update on one of 50 rows.
"""

import random

from django.db import connection, transaction
from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

COUNTER_TABLE = "bench_counter"


def ensure_counter_table() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {COUNTER_TABLE} (id int PRIMARY KEY, n bigint NOT NULL)"
        )
        cursor.execute(
            f"INSERT INTO {COUNTER_TABLE} SELECT g, 0 FROM generate_series(1, 50) g "
            "ON CONFLICT DO NOTHING"
        )


class BareApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request):
        return Response({"ok": True})


class SelectApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, pk: int):
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, number, price FROM concerts_seat WHERE id = %s", [pk])
            row = cursor.fetchone()
        return Response({"id": row[0], "number": row[1], "price": row[2]} if row else {})


class ContendedApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def post(self, request):
        row = random.randint(1, 50)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SELECT n FROM {COUNTER_TABLE} WHERE id = %s FOR UPDATE", [row])
            cursor.execute(f"UPDATE {COUNTER_TABLE} SET n = n + 1 WHERE id = %s", [row])
        return Response({"row": row})


urlpatterns = [
    path("bench/bare", BareApi.as_view()),
    path("bench/select/<int:pk>", SelectApi.as_view()),
    path("bench/contended", ContendedApi.as_view()),
]
