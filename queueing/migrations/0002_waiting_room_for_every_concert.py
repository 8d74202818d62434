"""Every concert gets its waiting room (concert_create makes one from now on), so
the operators' queue panel lists every concert, not only those someone joined."""

from django.db import migrations


def create_rooms(apps, schema_editor):
    Concert = apps.get_model("concerts", "Concert")
    WaitingRoom = apps.get_model("queueing", "WaitingRoom")
    existing = set(WaitingRoom.objects.values_list("concert_id", flat=True))
    WaitingRoom.objects.bulk_create(
        WaitingRoom(concert_id=pk)
        for pk in Concert.objects.values_list("pk", flat=True)
        if pk not in existing
    )


class Migration(migrations.Migration):
    dependencies = [
        ("queueing", "0001_waiting_room"),
        ("concerts", "0003_reservation_end_reason"),
    ]

    operations = [migrations.RunPython(create_rooms, migrations.RunPython.noop)]
