"""Loomgate collectors: telemetry rows into ClickHouse, health checks, SLAs and retention analytics."""
