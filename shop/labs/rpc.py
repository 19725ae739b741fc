"""RPC over RabbitMQ: the client publishes a request to the server's queue with `reply_to`
(its own exclusive callback queue) and a fresh `correlation_id`; the server answers on
`reply_to` with the same id. Two things keep a client sane. A timeout: a server that is
down leaves the request waiting in its queue, and a caller must give up at some point
(and tell its own caller, as the shop's API answers 503). And the correlation id: when
the server comes back it answers the request the caller gave up on, and that late reply
lands in the callback queue, ahead of the answer to the next call; only its id tells it
apart.

The broken client is the tutorial's without those two: it waits for as long as it takes
and takes the first reply that comes. Here the Fibonacci server stops for a moment and
call 2 waits for it; the lab stops watching after a second (the client would wait
forever) and makes call 3 on the same client once the server is back, as the next request
of a web process sharing the client would.
"""

from __future__ import annotations

import time
import uuid

import pika

from shop.labs.lab import Figures, Lab, Run, Variant, Worker, connect

LAB = Lab(
    name="rpc",
    title="RPC: reply_to, correlation_id and a timeout",
    question="The server stops for a while: what do the caller's next calls return?",
    sound=Variant(
        "timeout and correlation id",
        "the client gives up after 1 s and ignores replies whose correlation id is not its call's",
    ),
    broken=Variant(
        "no timeout, first reply", "the client waits as long as it takes and takes any reply"
    ),
    guarantee="every call returns its own answer or times out; none hangs, none is wrong",
    holds=lambda figures: figures["wrong"] == 0 and figures["hung"] == 0,
    outcome=(
        "of {calls} calls, {right} right, {wrong} wrong, {timed_out} timed out, {hung} still "
        "waiting when the lab stopped watching; late replies ignored: {ignored}"
    ),
    read=(
        "messaging/rpc.py: RpcClient (direct reply-to, a correlation id per call, a timeout "
        "that becomes a 503) and RpcServer (drops a request whose caller's deadline passed)."
    ),
    by_hand="""\
Freeze the coupon process (`kill -STOP <pid>` of `shop run coupon`) and order with a
coupon: after 3 seconds the API answers 503 and stores nothing. Wait a few seconds, then
`kill -CONT <pid>`: the coupon log says "stale coupon.reserve request dropped". Requests
carry their caller's deadline (header `x-reply-by`): the server acks and drops a request
whose caller gave up, so it never reserves a coupon for nobody, and nothing lands in
`coupons.rpc.dead`. Read `messaging/rpc.py` to see why a late reply would be harmless
anyway (the client matches replies by correlation id).
""",
)

TIMEOUT = 1.0  # the sound client's; the lab watches the broken one as long, then stops


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def fibonacci_server(amqp_url: str) -> Worker:
    """Answers each request on `rpc_queue`: fib(n) to `reply_to`, with its correlation id."""

    def answer(channel, method, properties, body: bytes) -> None:  # type: ignore[no-untyped-def]
        channel.basic_publish(
            "",
            properties.reply_to,
            str(fib(int(body))).encode(),
            pika.BasicProperties(correlation_id=properties.correlation_id),
        )
        channel.basic_ack(method.delivery_tag)

    return Worker(amqp_url, "rpc_queue", name="fibonacci server", prefetch=1, handle=answer)


class FibonacciClient:
    def __init__(self, amqp_url: str, *, careful: bool) -> None:
        self.careful = careful  # check the correlation id, give up at the timeout
        self.connection = connect(amqp_url, "rpc client")
        self.channel = self.connection.channel()
        self.callback_queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.basic_consume(self.callback_queue, self.on_reply, auto_ack=True)
        self.waiting_for: str | None = None
        self.reply: int | None = None
        self.ignored = 0

    def on_reply(self, _channel, _method, properties, body: bytes) -> None:  # type: ignore[no-untyped-def]
        if self.careful and properties.correlation_id != self.waiting_for:
            self.ignored += 1  # the late answer to a call this client gave up on
            return
        if self.reply is None:
            self.reply = int(body)

    def call(self, n: int) -> int | None:
        """fib(n) from the server; None when no reply came within TIMEOUT."""
        self.waiting_for, self.reply = str(uuid.uuid4()), None
        self.channel.basic_publish(
            "",
            "rpc_queue",
            str(n).encode(),
            pika.BasicProperties(reply_to=self.callback_queue, correlation_id=self.waiting_for),
        )
        deadline = time.monotonic() + TIMEOUT
        while self.reply is None and (remaining := deadline - time.monotonic()) > 0:
            self.connection.process_data_events(time_limit=remaining)  # early on a reply
        return self.reply


@LAB.measure
def measure(run: Run) -> Figures:
    channel = (connection := connect(run.amqp_url, "setup")).channel()
    channel.queue_declare("rpc_queue")
    connection.close()
    client = FibonacciClient(run.amqp_url, careful=not run.broken)
    answers: list[tuple[int, int | None]] = []

    server = fibonacci_server(run.amqp_url).start()
    answers.append((10, client.call(10)))
    run.say(f"call 1: fib(10) answered {answers[-1][1]}")
    server.stop()
    answers.append((12, client.call(12)))
    run.say(
        "stopped the server; call 2: fib(12) "
        + ("timed out" if not run.broken else "was still waiting")
        + f" after {TIMEOUT:g} s"
    )
    server = fibonacci_server(run.amqp_url).start()
    answers.append((15, client.call(15)))
    run.say(f"started the server again; call 3: fib(15) answered {answers[-1][1]}")
    server.stop()
    client.connection.close()

    unanswered = sum(1 for _, reply in answers if reply is None)
    return {
        "calls": len(answers),
        "right": sum(1 for n, reply in answers if reply == fib(n)),
        "wrong": sum(1 for n, reply in answers if reply is not None and reply != fib(n)),
        "timed_out": 0 if run.broken else unanswered,
        "hung": unanswered if run.broken else 0,
        "ignored": client.ignored,
    }
