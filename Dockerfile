# syntax=docker/dockerfile:1
# One image runs every CinemaCore process (`cinema migrate`, `cinema serve`, `cinema worker`);
# the `nginx` stage is the reverse proxy with its config template and the static files.
#   docker compose up --build        (see docs/deployment.md)
ARG PYTHON_VERSION=3.11

# --- dependencies only: rebuilt when pyproject.toml changes, not when the code does ---------
FROM python:${PYTHON_VERSION}-slim AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY pyproject.toml /tmp/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- reverse proxy -------------------------------------------------------------------------
FROM nginx:1.27-alpine AS nginx
# The image renders /etc/nginx/templates/*.template into /etc/nginx/conf.d/ with envsubst.
RUN rm -f /etc/nginx/conf.d/default.conf
COPY nginx/templates/ /etc/nginx/templates/
COPY static/ /srv/static/
# Swagger UI's files, when this version ships them (served at /docs/static/ by nginx itself).
COPY cinema/ /tmp/cinema/
RUN mkdir -p /srv/docs/static /srv/app \
    && if [ -d /tmp/cinema/api/static/swagger-ui ]; then \
         cp -r /tmp/cinema/api/static/swagger-ui/. /srv/docs/static/; fi \
    && if [ -d /tmp/cinema/api/static/app ]; then \
         cp -r /tmp/cinema/api/static/app/. /srv/app/; fi \
    && rm -rf /tmp/cinema

# --- the application (last, so a plain `docker build .` gives it) ---------------------------
FROM python:${PYTHON_VERSION}-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 cinema \
    && useradd --system --uid 10001 --gid cinema --home-dir /app --no-create-home cinema
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
# README.m[d]: copied when present (pyproject names it), no error when it is not.
COPY pyproject.toml README.m[d] ./
COPY cinema/ cinema/
COPY tasks/ tasks/
COPY db/ db/
COPY lua/ lua/
# A plain install, as a user gets it: db/ and lua/ travel inside the package (cinema._db,
# cinema._lua); --no-deps: the dependencies are in the layer above.
RUN pip install --no-deps . && rm -rf build *.egg-info
USER cinema
EXPOSE 8000
# Health checks live in docker-compose.yml: only `web` answers HTTP.
CMD ["cinema", "serve", "--host", "0.0.0.0"]
