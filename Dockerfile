# syntax=docker/dockerfile:1
# Sky Classroom in a container: the wheel (web client inside) on a slim Debian Python.
#   docker build -t skyclass .
#   docker run -p 8080:8080 -e SKYCLASS_SECRET=... -v skyclass-data:/data skyclass
# compose.yaml runs two nodes with Redis behind nginx.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server/ server/
COPY client_web/ client_web/
# The package and every runtime dependency as wheels: the runtime stage installs offline from them.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels skyclass \
    && useradd --system --create-home --uid 10001 skyclass \
    && mkdir /data && chown skyclass:skyclass /data
ENV SKYCLASS_HOST=0.0.0.0 \
    SKYCLASS_PORT=8080 \
    SKYCLASS_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
# Recordings, HLS segments, the timetable edited through the API (and the development secret
# when SKYCLASS_SECRET is unset: set it whenever tokens must outlive the container).
VOLUME /data
USER skyclass
WORKDIR /home/skyclass
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SKYCLASS_PORT', '8080'), timeout=2)"]
# `docker run IMAGE token --room g9-1 --role teacher --name "Ms Li"` makes a token (same secret).
ENTRYPOINT ["skyclass"]
CMD ["serve", "--log-format", "json"]
