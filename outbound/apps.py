from django.apps import AppConfig


class OutboundConfig(AppConfig):
    name = "outbound"
    verbose_name = "Outbound webhooks"

    def ready(self) -> None:
        # calls never imports outbound: the summary writer sends a signal, and this app listens.
        from calls.summaries.writer import call_summarized
        from outbound import services

        call_summarized.connect(services.on_call_summarized, dispatch_uid="outbound.call_summarized")
