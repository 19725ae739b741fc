"""Fixtures shared by the integration tests."""

import pytest

from shop.web import create_app


@pytest.fixture
def make_app():
    """Web apps (each one stands for a web process), their background threads closed after."""
    apps = []

    def make(settings):
        app = create_app(settings)
        apps.append(app)
        return app.test_client()

    yield make
    for app in apps:
        app.extensions["shop"].flash_sales.close()
