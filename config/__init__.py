"""Example and demo configuration files, shipped as package data (``collectors.resources.example_config``)."""
