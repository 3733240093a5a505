# One image for the web (uvicorn) and worker (celery) services.
FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN DEBUG=false SECRET_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 \
    python manage.py collectstatic --noinput \
 && useradd --system --home /app switchboard
USER switchboard

EXPOSE 8000
# uvicorn with uvloop, httptools and websockets' sans-I/O implementation: less CPU than daphne
# and far lower latency under load (README, "Benchmark"). daphne also works:
#   daphne --bind 0.0.0.0 --port 8000 --proxy-headers voiceproject.asgi:application
# --ws-max-size is the app's own frame limit (calls/frames.py, MAX_FRAME_CHARS): uvicorn's default
# of 16 MiB would buffer a whole oversized frame before the app could refuse it.
CMD ["uvicorn", "voiceproject.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--loop", "uvloop", "--http", "httptools", "--ws", "websockets-sansio", "--ws-per-message-deflate", "false", \
     "--ws-max-size", "65536", "--no-access-log", "--lifespan", "off"]
