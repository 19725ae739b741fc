# One image for every process of the shop: `shop up` by default; compose.yaml runs
# each process in its own container (gunicorn, `shop run NAME`, `shop migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The distribution's metadata first, then the code. COPY of a directory copies its
# contents, hence one line per package.
COPY pyproject.toml README.md alembic.ini ./
COPY messaging/ messaging/
COPY order_service/ order_service/
COPY inventory_service/ inventory_service/
COPY coupon_service/ coupon_service/
COPY notification_service/ notification_service/
COPY shop/ shop/
COPY migrations/ migrations/

# Editable, so the packages stay in /app next to migrations/ (messaging/migrations.py
# finds it as Path(messaging.__file__).parent.parent / "migrations").
RUN pip install --no-cache-dir -e .

# Run as an unprivileged user; it may write only var/ (SQLite files, the admin token).
RUN useradd --create-home --uid 10001 shop \
    && mkdir -p /app/var \
    && chown shop:shop /app/var
USER shop

EXPOSE 8000
CMD ["shop", "up"]
