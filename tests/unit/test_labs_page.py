"""The /labs page lists every lab with its commands and its last report, and the dashboard's
links to the labs name labs that exist. No broker: the web app with fakes."""

import json

from order_service.models import Base
from shop.catalog import CATALOG
from shop.labs import LABS
from shop.ops.views import DEAD_LETTER_LAB, QUEUE_LABS
from shop.web import create_app
from tests.support.fakes import FakeCoupons, FakeListener, FakePublisher


def test_every_queue_of_the_dashboard_links_to_a_lab_that_exists():
    names = {lab.name for lab in LABS}
    assert set(QUEUE_LABS) == {queue.name for queue in CATALOG.topology().queues}
    assert set(QUEUE_LABS.values()) | {DEAD_LETTER_LAB} <= names


def test_the_labs_page_shows_each_lab_its_commands_and_its_last_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # var/labs/ is where the shop runs
    reports = tmp_path / "var" / "labs"
    reports.mkdir(parents=True)
    (reports / "inbox-broken.json").write_text(
        json.dumps({"summary": "no inbox: 20 effects applied twice", "as_taught": True})
    )
    database = f"sqlite:///{tmp_path / 'orders.db'}"
    settings = CATALOG.default_settings().with_service("order", database_url=database)
    app = create_app(
        settings, coupons=FakeCoupons({}), publisher=FakePublisher(), listener=FakeListener()
    )
    from messaging.database import make_engine

    Base.metadata.create_all(make_engine(database))
    page = app.test_client().get("/labs").get_data(as_text=True)
    for lab in LABS:
        assert f'id="{lab.name}"' in page and f"shop lab run {lab.name} --broken" in page
    assert "no inbox: 20 effects applied twice" in page
    assert page.count("Not run here yet.") == len(LABS) - 1
