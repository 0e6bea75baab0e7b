# Loomgate gateway image (used by docker-compose.yml): the wheel is built in one stage and installed into a
# clean one, so the image holds exactly what `pip install` of the wheel gives (no source tree, no build tools).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY gateway ./gateway
COPY collectors ./collectors
COPY queries ./queries
COPY config ./config
RUN pip wheel --no-deps -w /dist .

FROM ${PYTHON_IMAGE}
# EXTRAS=embedded adds chDB (chdb:// stores); the compose stack uses the ClickHouse server and needs none.
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOOMGATE_ADMIN_PORT=8081
COPY --from=build /dist/ /tmp/dist/
RUN wheel="$(ls /tmp/dist/loomgate-*.whl)" \
    && pip install "${wheel}${EXTRAS:+[$EXTRAS]}" \
    && rm -rf /tmp/dist \
    && useradd --system --uid 10001 --home-dir /var/lib/loomgate --shell /usr/sbin/nologin loomgate \
    && mkdir -p /var/lib/loomgate /etc/loomgate \
    && loomgate example-config docker-gateway.yaml > /etc/loomgate/docker-gateway.yaml \
    && chown loomgate /var/lib/loomgate

USER loomgate
WORKDIR /var/lib/loomgate
EXPOSE 8080 8081
# /healthz of the admin listener (no auth); the port is the config's ${LOOMGATE_ADMIN_PORT:-8081}.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LOOMGATE_ADMIN_PORT', '8081') + '/healthz', timeout=3)"]
ENTRYPOINT ["loomgate"]
CMD ["serve", "--config", "/etc/loomgate/docker-gateway.yaml"]
