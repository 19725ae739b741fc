"""How cheaply does the flash sale answer a crowd? Run `python -m bench.flash_sale`.

One run, one table. Every row is served by the same gunicorn command line, the shop's own
web process (shop.processes.process_specs: 2 gthread workers x 8 threads, no access
log); only the app at its end differs. Every row has its own fresh RabbitMQ vhost (made
and deleted by shop/vhosts.py), its own SQLite database in a temporary folder,
and the same FLASH_SALE_QUEUE_LIMIT (default 1000). Every request is a POST with a
distinct customer (a new phone number each), from --connections keep-alive connections,
closed loop.

  no-op endpoint           bench_app() (apps.py): reads the body with the shop's own
                           read_body(PurchaseIn) and answers 202 with a ticket-shaped body.
                           No database, no broker. The yardstick: the cost of gunicorn +
                           Flask + the JSON parsing, which any endpoint pays.
  naive: connect+count     bench_app() (apps.py), the pattern the RabbitMQ tutorials teach: per
                           request a new pika.BlockingConnection, a passive queue_declare of
                           flash-sale.requests to read its length, compare with the limit,
                           publish when below (the count-then-publish race), close. Measured
                           with the queue at its limit, as the open-sale row.
  sold out (the shop)      the real shop: `python -m shop up` as a subprocess (every process,
                           SQLite under the temporary folder's var/), a product, a sale with
                           quota 1, one purchase, and a wait until GET /api/flash-sales/{id}
                           says sold_out. Then the crowd: every answer should be 410, from
                           the admission gate's memory (order_service/admission.py).
  open, queue at limit     the real web app (order_service.app:create_app()) under the same
                           gunicorn, without the order process: nobody drains
                           flash-sale.requests. A sale with quota 1,000,000; the warm-up's
                           purchases are admitted (202) and fill the queue (pika tops it up if
                           the warm-up did not); from then on every answer should be 429: from
                           memory, except one request per web process every 0.25 s that asks
                           the broker (and is refused by reject-publish).

The three servers run side by side. After a warm-up of each, the rows are measured in
--rounds rounds, each row for --duration / --rounds seconds per round, in a rotated order:
the machine is shared (with RabbitMQ, the generator, and whatever else runs on it), and
interleaving puts every row through the same ups and downs, so the ratios compare like
with like. A row's numbers are its rounds added up; p50/p99 pool the rounds' latency
distributions; a goal on throughput takes the row's ratio to its baseline in each round and
the median of the rounds.

How to read the table: `req/s` is answers per second (any status); p50/p99 are the
latencies the generator saw (closed loop: each connection sends its next request when the
previous answer is in, so by Little's law latency is about connections / req/s); `vs
no-op` is the row's req/s divided by the no-op's, and `p99 x` its p99 divided by the
no-op's p99; `statuses` counts the answers by HTTP status. The goals:
  - sold out: at least 0.90 of the no-op's throughput, p99 at most 2x the no-op's;
  - open, queue at limit: at least 0.50 of the no-op's throughput, p99 at most 2x;
  - the open-sale row at least 15x the naive baseline's throughput (no endpoint can go
    beyond the no-op, so the output also says how far the no-op itself is above naive).
Below the table, where the CPU went in each row, in % of one core, from /proc/PID/stat:
`web` the gunicorn processes, `supervisor` `shop up` itself (it pumps the access-log
lines of the web processes only with `shop up --access-log`), `services` the shop's other
processes (order, inventory, coupon, notification), `broker` RabbitMQ (shared with
anything else using it), `generator`, `other` the rest of the machine (other work on a
shared machine), `machine` the total (100 % per core); `web ms/answer` the web processes'
CPU milliseconds per answer (the cost of the endpoint itself, the least noisy number here);
`busiest worker` the share of the web CPU that the busier gunicorn worker took, averaged
over the rounds (50 % is even; gthread workers keep the keep-alive connections they
accepted, so one worker may serve most of them and be bound by its GIL). Then the goals,
each "goal met" or "goal NOT met".

The load generator is wrk (the Debian package `wrk`, a C program) with a Lua script that
makes each request's body and counts the statuses; when wrk is not installed, the shop's
own load generator runs instead (loadtest/crowd.py: a thread per connection, http.client
keep-alive). The output says which one ran
and its ceiling: the no-op row is the most the generator and the server reach together,
and the generator's CPU per request says how much of the machine it takes. The script
exits 0 whether or not the goals are met (it is a benchmark, not a test), and 1 when a
measurement could not be made. The numbers move from run to run; on a busy machine, a lot.

After the goals, the ticket worker's drain: how fast it decides a queue filled to its limit
(drain.py says how it is measured), on SQLite and on PostgreSQL; goal: 1,000 tickets/s.

Where each part is: apps.py (the bench's own endpoints), servers.py (starting the three
servers and preparing each row: a sold-out sale, a full queue), generators.py (wrk, or
loadtest/crowd.py), rows.py (a row's rounds added up, and its CPU by group), drain.py (the ticket
worker's drain), report.py (the
tables and the goals), __main__.py (the options, the order of it all). The shop's insides
come from bench/parts.py.
"""
