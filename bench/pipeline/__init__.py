"""How fast is the whole order pipeline, and its consumers? Run `python -m bench.pipeline`.

One run measures three things and prints one table.

(a) The highest sustained order rate. `shop up` runs as a subprocess, exactly as `make run`
    starts it (SQLite files under var/, gunicorn with the shop's settings, every service as a
    process), in a temporary folder and on a fresh RabbitMQ vhost. A load generator POSTs
    valid orders (one line, no coupon) to /api/orders at a fixed rate R for --duration
    seconds. R is *sustained* when
      - the web app kept up: every answer was 201, the answers came in at R (at least 95 %),
        and the 99th percentile of the HTTP latency stayed under --max-http-p99;
      - the queues kept up: the ready messages over all work queues (sampled every 0.25 s
        with a passive queue_declare), averaged over the last quarter of the run, were at
        most one second of orders (R): a burst is fine, a backlog that grows is not;
      - within --settle seconds after the last POST every order was CONFIRMED, every work
        queue was empty and every service's outbox was published.
    R starts at --pipeline-start, doubles while it passes, then is bisected between the
    highest pass and the lowest failure (--refine-steps times).
    Beside it, the same search runs against a *bare* endpoint: a tiny Flask app (bare.py)
    that validates the same JSON with order_service.commands.OrderIn and inserts one
    row into one SQLite table, served by the same gunicorn command line as the shop's web
    process. Ratio = pipeline rate / bare rate (goal: at least 0.25, stretch 0.5).
(b) Time from POST to CONFIRMED, p50 and p99, at half the rate found in (a). The generator
    records the wall-clock moment each POST was sent and the order id it got back; after
    the run the order database gives each order's updated_at, which the saga sets when it
    confirms the order. (Same machine, same clock.) Goal: p99 under 250 ms.
(a') The same search with every service on PostgreSQL (one fresh database on the server of
    BENCH_POSTGRES_URL, else TEST_POSTGRES_URL, else the local one): `shop up`, then `shop up
    --scale inventory=2,order=2`, whose replicas compete for each queue and share each outbox
    (SKIP LOCKED). Skipped, with a line saying so, where no PostgreSQL answers.
(idle) Before each search, after the first order went through and everything drained: the
    CPU of every process of `shop up` over --idle-seconds with nothing coming in (what the
    relays' safety-net polls, heartbeats and timers cost). Goal: under 3 % of one core.
    RabbitMQ's and PostgreSQL's shares are printed beside it, not counted in it.
(c) Each consumer's messages per second: N messages of the right types are loaded into the
    consumer's quorum queue on a fresh vhost, then a ConsumerRunner from messaging.consumer,
    with the service's real handler and a fresh migrated SQLite database, drains them in
    batches, as the service does (half the prefetch each: inbox rows, the handler for each
    message, one commit, one ack with multiple=True). Beside it, plain pika drains
    the same N messages from the same kind of queue with basic_ack and no database, with
    the same prefetch. The clock runs from the first delivery to the last ack.
    Goal: each consumer reaches at least 0.25 of raw pika.

The load generator is the shop's own (loadtest/crowd.py), in its open loop: request i is
due i / rate seconds after the start whatever the server does (a slow server does not slow
the offered rate down); a thread of its pool sends it, and its latency is counted from the
moment it was due, so waiting for a free thread counts too; a new TCP connection per
request (`Connection: close`, as a crowd of browsers would rather than one client re-using
a connection). The output gives its ceiling: the CPU time it spends per request, and so
the most requests per second it could offer with one core to itself.

How to read it: the machine has few cores (`nproc`), and the load generator, RabbitMQ, the
server's processes and anything else running on the machine share them, so every number
is "on this machine, with the generator competing". Each trial prints a line as it runs.
After the table:
  - for (a), a CPU table per search: each process's CPU (% of one core, from
    /proc/PID/stat) at the highest passing and the lowest failing rate; a Python process
    near 100 % is bound by its GIL, its threads cannot use a second core. Beside it, at the
    failing rate, what each process's threads were doing, sampled every 50 ms from
    /proc/PID/task/*/stat and wchan: running (or waiting for a core), asleep in SQLite's
    busy handler (waiting for another connection's write lock), on a futex (waiting for the
    GIL, or an idle thread), waiting on a socket (idle, or waiting for the broker). Then
    what that says, and what to try;
  - for (c), when a consumer misses its goal, the consumers run again under cProfile in
    this process: microseconds per message in each step of the runner's loop (envelope,
    inbox, handler, commit, ack), the time by layer (SQLAlchemy, sqlite3, pika, ...) for
    the worst one, and what to try.
The script exits 0 whether or not the goals are met (it is a benchmark, not a test), and 1
only when a measurement could not be made. The numbers move from run to run; on a busy
machine, by a lot.

Where each part is: trials.py (a fixed-rate trial, its verdict, the rate search), bare.py
and shop.py ((a) and (b) against the bare app and `shop up`), waits.py (what the server's
threads were doing), events.py and consumers.py ((c)), profile.py (cProfile of a consumer
that missed), report.py (the table and the notes), __main__.py (the options, the order of
it all). The shop's insides come from bench/parts.py.
"""
