"""Example and demo configuration files, shipped as package data (installed as
``loomgate_data.config``; ``collectors.resources.example_config``)."""
