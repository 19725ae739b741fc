# One image for every process of the shop: `shop up` by default; compose.yaml runs
# each process in its own container (gunicorn, `shop run NAME`, `shop migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The whole source tree (.dockerignore leaves out the venv, var/, tests and caches): every
# package of the catalog comes with its migrations, so a new service needs no line here.
COPY . .
RUN pip install --no-cache-dir .

# Run as an unprivileged user; it may write only var/ (SQLite files, the admin token).
RUN useradd --create-home --uid 10001 shop \
    && mkdir -p /app/var \
    && chown shop:shop /app/var
USER shop

EXPOSE 8000
CMD ["shop", "up"]
