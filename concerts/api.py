"""Catalogue API: thin views over selectors."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from concerts import selectors


class ConcertListOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    artist = serializers.CharField()
    venue = serializers.CharField()
    description = serializers.CharField()


class ScheduleSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    starts_at = serializers.DateTimeField()
    booking_opens_at = serializers.DateTimeField()
    booking_closes_at = serializers.DateTimeField()


class ConcertDetailOutput(ConcertListOutput):
    schedules = ScheduleSummaryOutput(many=True, source="schedules.all")


class ConcertListApi(ListAPIView):
    """Public list of concerts, paginated."""

    permission_classes = [AllowAny]
    serializer_class = ConcertListOutput

    def get_queryset(self):
        return selectors.concert_list()


class ConcertDetailApi(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=ConcertDetailOutput)
    def get(self, request: Request, concert_id: int) -> Response:
        concert = selectors.concert_get_with_schedules(concert_id=concert_id)
        return Response(ConcertDetailOutput(concert).data)
