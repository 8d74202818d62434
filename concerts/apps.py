from django.apps import AppConfig


class ConcertsConfig(AppConfig):
    name = "concerts"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from concerts import seatcache, selectors
        from concerts.models import Schedule, Seat
        from queueing import selectors as queue_selectors

        # The waiting room repeats "sold out" to the fans in line; the seats decide it.
        queue_selectors.sold_out_source_set(selectors.concert_sold_out)

        def date_changed(sender, instance, **kwargs) -> None:
            schedule_id = instance.pk if sender is Schedule else instance.schedule_id
            seatcache.bump_after_commit([schedule_id])

        for model in (Schedule, Seat):
            for signal in (post_save, post_delete):
                signal.connect(  # weak=False: the receiver is local to this method
                    date_changed,
                    sender=model,
                    weak=False,
                    dispatch_uid=f"seatcache-{model.__name__}",
                )
