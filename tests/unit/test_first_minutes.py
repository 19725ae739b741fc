"""What a new user meets first, without a broker: the SHOP_DEMO_DATA setting, where the demo
loader finds the web app, the dashboard's reading of a missing management API, and a lab
for every queue of the catalog."""

import pytest

from messaging.pipeline import QueueStatus
from messaging.settings import SettingsError
from shop import demo
from shop.catalog import CATALOG
from shop.ops.views import QUEUE_LABS, lab_of, read_through_management


@pytest.mark.parametrize("value", ["", "1", "true", "Yes", "on"])
def test_demo_data_is_on_unless_the_setting_says_otherwise(value):
    assert demo.wanted({"SHOP_DEMO_DATA": value}) is True
    assert demo.wanted({}) is True


@pytest.mark.parametrize("value", ["0", "false", "NO", "off"])
def test_shop_demo_data_0_turns_it_off(value):
    assert demo.wanted({"SHOP_DEMO_DATA": value}) is False


def test_a_value_it_does_not_know_is_a_configuration_error_naming_the_variable():
    with pytest.raises(SettingsError, match="SHOP_DEMO_DATA must be 1 or 0"):
        demo.wanted({"SHOP_DEMO_DATA": "maybe"})


def test_the_loader_reaches_a_web_app_on_a_wildcard_address_on_loopback():
    assert demo.web_app_url("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert demo.web_app_url("::", 8000) == "http://[::1]:8000"
    assert demo.web_app_url("shop.local", 80) == "http://shop.local:80"


def test_every_queue_of_the_catalog_links_to_a_lab_and_every_dead_letter_queue_to_poison():
    names = [queue.name for queue in CATALOG.topology().queues]
    assert sorted(QUEUE_LABS) == sorted(names)
    assert all(lab_of(f"{name}.dead", dead=True) == "poison" for name in names)


def status(name, ready, unacked):
    return QueueStatus(name=name, ready=ready, unacked=unacked, consumers=0, dead=False)


def test_figures_without_unacked_mean_no_management_api_and_no_queue_means_nothing_known():
    assert read_through_management([status("a", 3, 0), status("b", None, None)]) is True
    assert read_through_management([status("a", 3, None), status("b", 0, None)]) is False
    assert read_through_management([status("a", None, None)]) is None
