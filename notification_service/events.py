"""The events the notification service announces (through its outbox, by the sender)."""

from __future__ import annotations

from messaging.events import Event, with_example
from messaging.outbox import Outbox
from notification_service.models import NotificationOutbox

SERVICE = "notification_service"
outbox = Outbox(NotificationOutbox, app_id=SERVICE)

ORDER_ID = "5b0c7e0e-6f1e-4c55-9a34-2f6d1f0c9a11"
SENT_EXAMPLE = {
    "order_id": ORDER_ID,
    "event": "order.confirmed",
    "phone": "+4930123456",
    "text": "Your order 5b0c7e0e is confirmed. Total 9.00. Thank you!",
}


class SmsSent(Event):
    TYPE = "notification.sms_sent"
    SUMMARY = "The gateway took the SMS that answers an event."
    model_config = with_example(**SENT_EXAMPLE)
    order_id: str | None
    event: str  # the event the SMS answers
    phone: str
    text: str


class SmsFailed(SmsSent):
    TYPE = "notification.sms_failed"
    SUMMARY = "The gateway refused the SMS for good; it is not tried again."
    model_config = with_example(**SENT_EXAMPLE, error="the gateway refused the SMS: HTTP 400")
    error: str


PUBLISHED = (SmsSent, SmsFailed)
