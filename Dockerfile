# Loomgate gateway image (used by docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /opt/loomgate

# Dependencies first, so code changes don't reinstall them.
COPY pyproject.toml ./
RUN mkdir -p gateway collectors && touch gateway/__init__.py collectors/__init__.py \
    && pip install . && pip uninstall -y loomgate

COPY gateway ./gateway
COPY collectors ./collectors
COPY queries ./queries
COPY config ./config
# Editable install keeps queries/ next to the packages, where the schema and query library look for them.
RUN pip install --no-deps -e . \
    && useradd --system --home /var/lib/loomgate loomgate \
    && mkdir -p /var/lib/loomgate /etc/loomgate && chown loomgate /var/lib/loomgate

USER loomgate
EXPOSE 8080 8081
ENTRYPOINT ["loomgate"]
CMD ["serve", "--config", "/etc/loomgate/docker-gateway.yaml"]
